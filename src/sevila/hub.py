"""Where a model comes from: short names, local directories and Hugging Face hub ids, resolved to a directory.

* `NAMED_MODELS` is the one registry of models known by a short name; ``demo`` is the tiny SeViLA of the
  synthetic world shipped as package data (``sevila/assets/demo/model``).
* `resolve_directory` takes a local directory as is and downloads a hub id (``owner/name``) into the
  Hugging Face cache, or takes it from there (offline too, once it is cached); `hub_file` does the same for
  one file (the released ``sevila_pretrained.pth`` of `SEVILA_HUB_ID`). Both take a ``revision`` to pin and
  fail with one line naming the repository, file and revision they could not reach.
* `model_card` writes the ``README.md`` of a model directory: what it is, where its weights came from, the
  licences, the paper's numbers and how to cite.

This room imports nothing of the model or the formats (the model's loaders import it), and no torch.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

from sevila.utils.errors import CheckpointError

# The transformers BLIP-2 (EVA ViT-g + Flan-T5-XL) that the paper's model is built on.
BLIP2_HUB_ID = "Salesforce/blip2-flan-t5-xl"
# The authors' release of the paper's checkpoint (both Q-Former branches; the ViT and T5 come from BLIP-2).
SEVILA_HUB_ID = "Shoubin/SeViLA"
PAPER_CHECKPOINT = "sevila_pretrained.pth"

HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")  # a Hugging Face hub id, "owner/name"
CONFIG_NAME = "config.json"  # what makes a directory a model directory (ours and transformers')


def is_hub_id(name: str | Path) -> bool:
    """``owner/name`` that is not also a local path."""
    return bool(HUB_ID.fullmatch(str(name))) and not Path(name).exists()


def _unreachable(what: str, revision: str | None, err: Exception, endpoint_down: str | None = None) -> CheckpointError:
    """One line naming what could not be fetched, at which revision, and why."""
    from huggingface_hub import constants

    reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
    at = f" at revision {revision}" if revision else ""
    if endpoint_down:
        why = f"{endpoint_down}, and it is not in the cache {constants.HF_HUB_CACHE}"
    elif constants.HF_HUB_OFFLINE:
        why = (
            f"HF_HUB_OFFLINE is set and it is not in the cache {constants.HF_HUB_CACHE}; {type(err).__name__}: {reason}"
        )
    else:
        why = f"{type(err).__name__}: {reason}"
    return CheckpointError(
        f"could not get {what}{at} from the Hugging Face Hub ({why}); download it elsewhere and pass the local path"
    )


def _endpoint_down() -> str | None:
    """Why the Hub cannot be reached (one request, no retries), or None when it answers or HF_HUB_OFFLINE is set.

    The hub client retries a refused or timed-out connection five times over about 25 s, with a warning each
    time (right on a flaky network); with no network at all, one probe says so at once and the call below
    goes straight to the cache, as the client itself would after its retries."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        get_session().head(constants.ENDPOINT, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except Exception as err:  # the transport's connect and timeout errors: any answer at all means reachable
        return f"{constants.ENDPOINT} is unreachable ({type(err).__name__})"
    return None


def resolve_directory(
    name_or_path: str | Path,
    patterns: list[str] | None = None,
    *,
    revision: str | None = None,
    token: str | bool | None = None,
    cache_dir: str | Path | None = None,
    force_download: bool = False,
    local_files_only: bool = False,
) -> Path:
    """A local directory as is; otherwise a Hugging Face hub id downloaded (or taken from the cache).

    ``patterns`` limits the download to the files matching them (``huggingface_hub``'s ``allow_patterns``);
    ``revision`` (a branch, tag or commit) pins it; the other keywords are ``snapshot_download``'s.
    """
    path = Path(name_or_path)
    if path.is_dir():
        return path
    name = str(name_or_path)
    if path.exists():
        raise CheckpointError(f"{name} is a file; expected a model directory or a Hugging Face hub id")
    if not HUB_ID.fullmatch(name):
        raise FileNotFoundError(f"model directory not found: {name} (nor is it a Hugging Face hub id 'owner/name')")
    from huggingface_hub import snapshot_download

    down = None if local_files_only else _endpoint_down()
    try:
        return Path(
            snapshot_download(
                repo_id=name,
                allow_patterns=patterns,
                revision=revision,
                token=token,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only or down is not None,
            )
        )
    except Exception as err:  # offline, unknown repo or revision, auth: one line instead of a network traceback
        raise _unreachable(name, revision, err, down) from None


def hub_file(repo_id: str, filename: str, *, revision: str | None = None, token: str | bool | None = None) -> Path:
    """One file of a hub repository, downloaded into the Hugging Face cache (or taken from there)."""
    from huggingface_hub import hf_hub_download

    down = _endpoint_down()
    try:
        return Path(
            hf_hub_download(
                repo_id=repo_id, filename=filename, revision=revision, token=token, local_files_only=down is not None
            )
        )
    except Exception as err:
        raise _unreachable(f"{filename} of {repo_id}", revision, err, down) from None


def hub_revision(directory: str | Path) -> str | None:
    """The commit of a Hugging Face cache snapshot (``.../snapshots/<commit>``), or None for any other directory."""
    parts = Path(directory).parts
    if len(parts) >= 2 and parts[-2] == "snapshots" and re.fullmatch(r"[0-9a-f]{40}", parts[-1]):
        return parts[-1]
    return None


def package_version() -> str:
    """The installed sevila's version (read from its metadata: this room may not import the package root)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("sevila")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree that is not installed
        return "unknown"


def provenance(**fields) -> dict:
    """What produced an output and when: the sevila version, the UTC date, then ``fields`` (sources, settings).
    Written as ``provenance.json`` beside a converted model and into a training run's folder."""
    return {
        "producer": f"sevila {package_version()}",
        "sevila_version": package_version(),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        **fields,
    }


# ---------------------------------------------------------------------------------------------- model cards
MODEL_CARD_NAME = "README.md"  # the Hub shows a repository's README.md (YAML metadata + text) as its model card
PAPER_URL = "https://arxiv.org/abs/2305.06988"
CODE_URL = "https://github.com/Yui010206/SeViLA"
CITATION = """@inproceedings{yu2023self,
  title     = {Self-Chained Image-Language Model for Video Localization and Question Answering},
  author    = {Yu, Shoubin and Cho, Jaemin and Yadav, Prateek and Bansal, Mohit},
  booktitle = {Advances in Neural Information Processing Systems (NeurIPS)},
  year      = {2023}
}"""

_WHAT = """SeViLA (Yu, Cho, Yadav, Bansal, NeurIPS 2023, [paper]({paper})): one frozen BLIP-2 (EVA ViT-g + Flan-T5)
with two trained Q-Former heads. The **localizer** scores each of {frames} uniformly sampled frames and keeps
the top {keyframes} as keyframes; the **answerer** reads them with the question and its options and picks the
option letter with the highest score. This directory is in the format of the `sevila` package
(`config.json`, safetensors weights, `tokenizer/`)."""

_USE = """```python
from sevila.inference import VideoQA

qa = VideoQA.load("{name}")
answer = qa.predict("video.mp4", "what does the man do after he sits down?", ["eats", "reads", "sleeps"])
```

or `sevila answer video.mp4 -q "..." -o eats -o reads -o sleeps --model {name}`."""

_PAPER_NUMBERS = """The released checkpoint is the paper's zero-shot model: the localizer pre-trained on QVHighlights,
the answerer BLIP-2's. Accuracy (%) on the validation splits, as the paper reports it (Tables 2 and 3;
the authors attribute a reproduction's 64.9 on NExT-QA to A100 against their A6000 GPUs):

| NExT-QA (Tem / Cau / Des / Avg) | STAR (Int / Seq / Pre / Fea / Avg) | How2QA | TVQA | VLEP |
|---|---|---|---|---|
| 61.3 / 61.5 / 75.6 / **63.6** | 48.3 / 45.0 / 44.4 / 40.8 / **44.6** | 72.3 | 38.2 | 64.4 |

Fine-tuned on each dataset (Table 1; `sevila train configs/<dataset>/...` from this model):
NExT-QA 73.8, STAR 64.9, How2QA 83.6, TVQA 61.6, VLEP 68.9. The localizer alone on QVHighlights test:
R1@0.5 54.5, R1@0.7 36.5, mAP 32.3."""

_LICENCES = """The SeViLA code release ({code}) is under the BSD 3-Clause licence, like LAVIS which it extends, and
so is this package. BLIP-2 Flan-T5-XL ([{blip2}](https://huggingface.co/{blip2})) is released under MIT;
Flan-T5 under Apache-2.0. Check each source's terms before redistributing the weights."""


def model_card(
    *,
    name: str = "MODEL_DIR",
    sources: list[dict] | None = None,
    paper: bool = False,
    num_frames: int = 32,
    num_keyframes: int = 4,
):
    """The model card (``huggingface_hub.ModelCard``) of a model directory: what it is, ``sources`` (dicts
    with ``repo``, ``file``, ``revision``: where the weights came from), the licences, and with ``paper``
    the paper's numbers for the released checkpoint; always how to load it and how to cite."""
    from huggingface_hub import ModelCard, ModelCardData

    data = ModelCardData(
        library_name="sevila",
        license="bsd-3-clause",
        base_model=BLIP2_HUB_ID if paper else None,
        pipeline_tag="video-text-to-text",
        tags=["sevila", "video-question-answering", "video-localization", "blip-2"],
    )
    title = "SeViLA: the paper's model" if paper else "SeViLA"
    parts = [f"# {title}", _WHAT.format(paper=PAPER_URL, frames=num_frames, keyframes=num_keyframes)]
    if sources:
        lines = ["## Where the weights came from", ""]
        for source in sources:
            where = source.get("repo") or source.get("path", "?")
            what = f" `{source['file']}`" if source.get("file") else ""
            pinned = f" at revision `{source['revision']}`" if source.get("revision") else ""
            lines.append(f"* {source.get('role', 'weights')}:{what} from `{where}`{pinned}")
        lines += ["", "Converted with `sevila convert`; `provenance.json` beside the weights records the run."]
        parts.append("\n".join(lines))
    parts.append("## Use\n\n" + _USE.format(name=name))
    if paper:
        parts.append("## The paper's numbers\n\n" + _PAPER_NUMBERS)
    parts.append("## Licence\n\n" + _LICENCES.format(code=CODE_URL, blip2=BLIP2_HUB_ID))
    parts.append("## Citation\n\n```bibtex\n" + CITATION + "\n```")
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n\n".join(parts) + "\n")


# ---------------------------------------------------------------------------------------------- named models
DEMO_DIR = Path(__file__).resolve().parent / "assets" / "demo"  # the demo model and its example video


def demo_model_dir() -> Path:
    """The demo model shipped with the package (a tiny SeViLA of the synthetic world)."""
    path = DEMO_DIR / "model"
    if not (path / CONFIG_NAME).is_file():
        raise CheckpointError(
            f"the demo model is not installed at {path}; build it with "
            "`python -m sevila_toy.demo.build --ship DIR` and copy DIR there (docs/demo.md)"
        )
    return path


# Models known by a short name -> a function giving their directory (called only when the name is used).
NAMED_MODELS: dict[str, Callable[[], Path]] = {"demo": demo_model_dir}


def resolve_name(name_or_path: str | Path) -> str | Path:
    """A short name of `NAMED_MODELS` -> its directory; anything else (a directory, a hub id) unchanged."""
    name = str(name_or_path)
    if name in NAMED_MODELS:
        return NAMED_MODELS[name]()
    return name_or_path


__all__ = [
    "BLIP2_HUB_ID",
    "CITATION",
    "DEMO_DIR",
    "HUB_ID",
    "MODEL_CARD_NAME",
    "NAMED_MODELS",
    "PAPER_CHECKPOINT",
    "SEVILA_HUB_ID",
    "demo_model_dir",
    "hub_file",
    "hub_revision",
    "is_hub_id",
    "model_card",
    "package_version",
    "provenance",
    "resolve_directory",
    "resolve_name",
]
