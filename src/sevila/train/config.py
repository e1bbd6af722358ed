"""The run configuration of `sevila train`: a YAML file plus dotted ``key=value`` overrides, typed and checked.

Every problem is a `ConfigError` that names the dotted key (``optim.lr``), so a typo in a 200-line launch
script is found in one look, before any model is loaded. Values given on the command line are parsed as
YAML scalars (``epochs=3``, ``uniform_frames=true``, ``model=null``); a float field also accepts YAML 1.1's
``3e-5`` (which PyYAML reads as a string).

Relative paths (annotation files, video roots, the output directory, a model directory) are relative to
the working directory of the command, as in the original's configs.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import yaml

STAGES = ("pretrain-localizer", "finetune-answerer", "refine-localizer")

# Validation metrics (the names logged in metrics.jsonl) and the ones each stage can keep its best epoch by.
FRAME_HIT = "val_top1_frame_hit"  # pretrain-localizer: queries whose top-scored frame is in a relevant window
QA_ACCURACY = "val_qa_accuracy"  # QA stages: accuracy over the validation questions (a fraction)
STAR_MEAN = "val_star_mean_type_accuracy"  # unweighted mean of STAR's four type accuracies (a fraction)
SELECTION_METRICS = {
    "pretrain-localizer": (FRAME_HIT,),
    "finetune-answerer": (QA_ACCURACY, STAR_MEAN),
    "refine-localizer": (QA_ACCURACY, STAR_MEAN),
}
KEEP_LOCALIZER = "model"  # localizer_init: keep the starting model's localizer


class ConfigError(ValueError):
    """A bad run configuration; `key` is the dotted name of the offending entry."""

    def __init__(self, key: str, problem: str, source: str | None = None):
        self.key = key
        self.problem = problem
        where = f"{source}: " if source else ""
        super().__init__(f"{where}config key {key!r}: {problem}")


@dataclass
class DataConfig:
    """Annotation records (JSONL of `sevila.data`), videos and how frames are sampled."""

    train: str  # records of the training split
    val: str  # records of the validation split (best-checkpoint selection)
    video_root: str  # folder the records' video paths are relative to
    train_frames: int  # frames sampled per video in training (the original's train ``n_frms``)
    eval_frames: int  # frames sampled per video in validation (eval ``n_frms``)
    val_video_root: str | None = None  # default: video_root
    image_size: int = 224
    # The training crop (random-resized, one box per clip), as the original. False: whole frames, resized and
    # normalised as in evaluation (footage whose subject may sit anywhere, like the synthetic world's).
    augment: bool = True
    video_path: str = "{video}.mp4"  # format over a record's video, qid, dataset (see VideoRecordDataset)
    backend: str = "pyav"
    num_workers: int = 4  # DataLoader worker processes per training process
    skip_unreadable: bool = True  # drop items whose video cannot be read (counted, logged) instead of failing


@dataclass
class OptimConfig:
    """AdamW and the original's ``linear_warmup_cosine_lr`` schedule (see `sevila.train.optim`)."""

    lr: float  # the original's init_lr
    min_lr: float = 0.0
    warmup_lr: float = 1e-8
    warmup_steps: int = 0
    weight_decay: float = 0.05
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    # What warmup_steps counts: optimizer steps (ours), or data iterations as the original does. They
    # differ only under gradient accumulation.
    warmup_unit: Literal["optimizer_steps", "iterations"] = "optimizer_steps"
    # Divide each micro-batch loss by grad_accum_steps so accumulated gradients are means (ours); the
    # original sums them (false). AdamW's update is invariant to that constant factor except through eps
    # and gradient clipping, so this matters little, but gradient norms and max_grad_norm read as means.
    scale_loss_by_accumulation: bool = True
    max_grad_norm: float | None = None  # the original does not clip


@dataclass
class TrainConfig:
    stage: str  # one of STAGES
    output_dir: str  # the run directory: checkpoints, best model, metrics.jsonl, TensorBoard events
    data: DataConfig
    optim: OptimConfig
    epochs: int
    batch_size: int  # per process
    eval_batch_size: int  # per process
    model: str | None = None  # a sevila model directory or hub id to start from
    init: str | None = None  # or "blip2 <hub id | directory>": BLIP-2's Q-Former in both branches
    # The localizer a 'model' start trains or uses. "model": the starting model's. "blip2 <hub id | directory>":
    # right after loading, the localizer (vision LayerNorm, query tokens, Q-Former, projection) is replaced by
    # that BLIP-2's Q-Former, as the original's self-refinement does (load_qformer_loc); the answerer, ViT and
    # T5 stay the model's. The refine-localizer configs start so. With rounds, round 1 only (round r > 1 starts
    # from round r-1's best). See sevila.train.start.
    localizer_init: str = KEEP_LOCALIZER
    # The validation metric whose best epoch becomes best/ (both are logged every epoch). null: the stage's own,
    # val_qa_accuracy (pretrain-localizer: val_top1_frame_hit). val_star_mean_type_accuracy: the unweighted mean
    # of the four STAR type accuracies (Interaction, Sequence, Prediction, Feasibility), the original's STAR
    # agg_metrics; the STAR configs select so. It needs validation questions of all four types.
    select_by: Literal["val_qa_accuracy", "val_star_mean_type_accuracy", "val_top1_frame_hit"] | None = None
    grad_accum_steps: int = 1
    num_keyframes: int = 4  # frames the localizer keeps for the answerer (the original's frame_num)
    uniform_frames: bool = False  # finetune-answerer without the localizer: every sampled frame, jointly
    rounds: int = 1  # refine-localizer: rounds of self-refinement, each from the previous round's best
    seed: int = 42
    mixed_precision: Literal["auto", "bf16", "no"] = "auto"  # auto: bf16 autocast on CUDA, none on CPU
    frozen_dropout: bool = True  # dropout stays on in the frozen T5 / branch in training, as in the original
    find_unused_parameters: bool = False
    # Keep the frozen ViT's output for every distinct frame in memory and reuse it when that frame comes back
    # (later epochs, validation). Exact, since the ViT is frozen and in eval mode; it needs data.augment false,
    # as random crops never repeat. Worth it for small videos trained over several epochs (the demo world).
    cache_vision_states: bool = False
    vision_cache_bytes: int = 4 << 30  # past this, further frames are encoded but not kept
    checkpoint_every_steps: int = 200  # optimizer steps between resumable checkpoints (0: epoch ends only)
    log_every_steps: int = 10
    tensorboard: bool = True
    resume: bool | str = False  # true: the run directory's checkpoint; a string: that checkpoint directory
    # End the run after this many optimizer steps (of the round) as a kill would: no checkpoint is written
    # then, so a resumed run continues from the last periodic one (for tests and time-limited jobs).
    stop_after_steps: int | None = None
    # The YAML file the config was read from (set by load_config; not a key), for errors found while running.
    source_file: ClassVar[str | None] = None

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir)

    @property
    def selection_metric(self) -> str:
        """The metric the best epoch is chosen by (`select_by`, else the stage's own)."""
        return self.select_by or SELECTION_METRICS[self.stage][0]

    @property
    def localizer_from(self) -> str | None:
        """The BLIP-2 whose Q-Former replaces the starting model's localizer (`localizer_init`), if any."""
        return blip2_source(self.localizer_init)

    @property
    def val_video_root(self) -> str:
        return self.data.val_video_root or self.data.video_root

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------- parsing
def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if _is_union(tp):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(tp))
    return {int: "an integer", float: "a number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType)


def _coerce(key: str, value: Any, tp: Any) -> Any:
    """``value`` as type ``tp`` or a `ConfigError` naming ``key``; only lossless conversions are made."""
    if _is_union(tp):
        if value is None and type(None) in typing.get_args(tp):
            return None
        for option in typing.get_args(tp):
            if option is type(None):
                continue
            try:
                return _coerce(key, value, option)
            except ConfigError:
                continue
        raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
    if typing.get_origin(tp) is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 3e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str) and value:
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(key, f"expected {_type_name(tp)}, got {value!r}")


def _build(cls: type, data: Any, prefix: str) -> Any:
    """A config dataclass from a mapping: unknown keys (with a did-you-mean), missing keys and types checked."""
    if not isinstance(data, Mapping):
        raise ConfigError(prefix.rstrip(".") or "<root>", f"expected a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in data:
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {prefix}{close[0]!r}?" if close else f"; known keys: {', '.join(fields)}"
            raise ConfigError(f"{prefix}{key}", "unknown key" + hint)
    values: dict[str, Any] = {}
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(key, "missing (required)")
            continue
        tp = hints[name]
        if dataclasses.is_dataclass(tp):
            values[name] = _build(tp, data[name], f"{key}.")
        else:
            values[name] = _coerce(key, data[name], tp)
    return cls(**values)


def blip2_source(value: str | None) -> str | None:
    """The hub id or directory of a ``"blip2 <hub id | directory>"`` value, else None."""
    if value is None:
        return None
    kind, _, source = value.strip().partition(" ")
    return (source.strip() or None) if kind == "blip2" else None


def _check_stage_start(config: TrainConfig) -> None:
    """`localizer_init` is 'model' or a BLIP-2 that can exist; `select_by` is one of the stage's metrics."""
    if config.localizer_init != KEEP_LOCALIZER:
        source = blip2_source(config.localizer_init)
        if source is None:
            raise ConfigError(
                "localizer_init",
                f"expected {KEEP_LOCALIZER!r} (keep the starting model's localizer) "
                f"or 'blip2 <hub id or directory>', got {config.localizer_init!r}",
            )
        if config.init is not None:
            raise ConfigError(
                "localizer_init",
                "'init' already starts the localizer from BLIP-2; localizer_init "
                f"replaces the localizer of a 'model' start, so it must be {KEEP_LOCALIZER!r} here",
            )
        path = Path(source)
        if not path.is_dir() and (path.exists() or not re.fullmatch(r"[\w.-]+/[\w.-]+", source)):
            raise ConfigError(
                "localizer_init",
                f"BLIP-2 source {source!r} is neither a directory nor a Hugging Face hub id 'owner/name'",
            )
    offered = SELECTION_METRICS[config.stage]
    if config.select_by is not None and config.select_by not in offered:
        raise ConfigError(
            "select_by", f"{config.stage} selects its best epoch by {' or '.join(offered)}, got {config.select_by!r}"
        )


def _positive(config: TrainConfig, *keys: str, allow_zero: bool = False) -> None:
    for key in keys:
        value: Any = config
        for part in key.split("."):
            value = getattr(value, part)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            raise ConfigError(key, f"must be {'>= 0' if allow_zero else 'positive'}, got {value!r}")


def _check_keyframes(config: TrainConfig) -> None:
    """The localizer must have at least num_keyframes frames to choose from wherever it chooses."""
    if config.stage == "pretrain-localizer" or config.uniform_frames:
        return
    splits = ["eval_frames"] + (["train_frames"] if config.stage == "finetune-answerer" else [])
    for split in splits:
        frames = getattr(config.data, split)
        if config.num_keyframes > frames:
            problem = f"{config.num_keyframes} keyframes cannot be chosen from {frames} {split}"
            raise ConfigError("num_keyframes", problem)


def validate(config: TrainConfig) -> TrainConfig:
    """Relations between keys that types alone do not catch."""
    if config.stage not in STAGES:
        raise ConfigError("stage", f"expected one of {', '.join(STAGES)}, got {config.stage!r}")
    if (config.model is None) == (config.init is None):
        raise ConfigError("model", "give exactly one of 'model' (a sevila model) and 'init' ('blip2 <id|dir>')")
    if config.init is not None:
        kind, _, source = config.init.partition(" ")
        if kind != "blip2" or not source.strip():
            raise ConfigError("init", f"expected 'blip2 <hub id or directory>', got {config.init!r}")
    _positive(
        config,
        "epochs",
        "batch_size",
        "eval_batch_size",
        "grad_accum_steps",
        "num_keyframes",
        "rounds",
        "log_every_steps",
        "stop_after_steps",
        "data.train_frames",
        "data.eval_frames",
        "data.image_size",
        "optim.lr",
        "optim.eps",
    )
    _positive(
        config,
        "checkpoint_every_steps",
        "vision_cache_bytes",
        "data.num_workers",
        "optim.min_lr",
        "optim.warmup_lr",
        "optim.warmup_steps",
        "optim.weight_decay",
        "optim.max_grad_norm",
        allow_zero=True,
    )
    for key in ("optim.beta1", "optim.beta2"):
        value = getattr(config.optim, key.split(".")[1])
        if not 0 <= value < 1:
            raise ConfigError(key, f"must be in [0, 1), got {value!r}")
    if config.optim.min_lr > config.optim.lr:
        raise ConfigError("optim.min_lr", f"must not exceed optim.lr ({config.optim.lr}), got {config.optim.min_lr}")
    if config.rounds > 1 and config.stage != "refine-localizer":
        raise ConfigError("rounds", f"only refine-localizer has rounds; stage is {config.stage!r}")
    if config.uniform_frames and config.stage != "finetune-answerer":
        raise ConfigError("uniform_frames", f"only finetune-answerer uses uniform frames; stage is {config.stage!r}")
    if config.cache_vision_states and config.data.augment:
        raise ConfigError(
            "cache_vision_states",
            "needs data.augment false: random crops never give the same "
            "frame twice, so cached ViT states would never be reused",
        )
    _check_keyframes(config)
    _check_stage_start(config)
    return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=value`` -> (["a", "b"], YAML-parsed value)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip() or any(not part for part in key.strip().split(".")):
        raise ConfigError(text, "overrides look like key=value or section.key=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Set dotted keys in a nested mapping (a copy); sections are created as needed."""
    result = _deep_copy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = result
        for i, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(path[: i + 1]), f"is {child!r}, not a section; cannot set {'.'.join(path)}")
            node = child
        node[path[-1]] = value
    return result


def _deep_copy(data: Any) -> Any:
    return {k: _deep_copy(v) for k, v in data.items()} if isinstance(data, dict) else data


def config_from_dict(data: Mapping[str, Any], source: str | None = None) -> TrainConfig:
    try:
        config = validate(_build(TrainConfig, data, ""))
    except ConfigError as err:
        if source is None:
            raise
        raise ConfigError(err.key, err.problem, source) from None
    config.source_file = source
    return config


def load_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """Read a YAML run config, apply ``key=value`` overrides, and check everything."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(data, dict):
        raise ConfigError("<root>", "expected a mapping of keys", str(path))
    return config_from_dict(apply_overrides(data, overrides), str(path))


__all__ = [
    "FRAME_HIT",
    "QA_ACCURACY",
    "SELECTION_METRICS",
    "STAGES",
    "STAR_MEAN",
    "ConfigError",
    "DataConfig",
    "OptimConfig",
    "TrainConfig",
    "apply_overrides",
    "blip2_source",
    "config_from_dict",
    "load_config",
    "validate",
]
