"""The Hub both ways: `push_to_hub` (huggingface_hub's ModelHubMixin) to a hub server on 127.0.0.1 and
`from_pretrained(repo_id, revision=, token=)` back; sharded safetensors; transformers' AutoConfig knows
``model_type: "sevila"``."""

import json
import subprocess
import sys

import huggingface_hub.constants as hub_constants
import pytest
import torch

from sevila import prompts
from sevila.model import SeViLA
from sevila.model.weights import from_pretrained
from tests.support.fake_hub import FakeHub
from tests.support.tiny import OPTIONS, QUESTION, random_frames, tiny_model


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    with FakeHub() as hub:
        monkeypatch.setattr(hub_constants, "ENDPOINT", hub.endpoint)
        monkeypatch.setattr(
            hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", hub.endpoint + "/{repo_id}/resolve/{revision}/{filename}"
        )
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
        monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
        yield hub


def option_scores(model: SeViLA) -> torch.Tensor:
    qa, loc = prompts.qa_prompt(QUESTION, OPTIONS), prompts.loc_prompt(QUESTION, OPTIONS)
    with torch.no_grad():
        return model.predict(random_frames(1, 4, model.config), [qa], 5, [loc], num_keyframes=2).option_scores


def test_push_to_hub_round_trips_through_a_hub_server(tmp_path, fake_hub):
    model = tiny_model(seed=3)
    model.model_card_text = "---\nlicense: bsd-3-clause\n---\n\n# A card that travels\n"
    url = model.push_to_hub("tester/tiny-sevila", token="hf_test", commit_message="first")
    assert "/tester/tiny-sevila/commit/" in str(url)
    files = fake_hub.repos["tester/tiny-sevila"]["files"]
    assert {"config.json", "model.safetensors", "README.md", "tokenizer/tokenizer.json"} <= set(files)
    assert json.loads(files["config.json"])["model_type"] == "sevila"
    assert b"A card that travels" in files["README.md"]
    first = fake_hub.repos["tester/tiny-sevila"]["sha"]

    loaded = SeViLA.from_pretrained("tester/tiny-sevila", revision=first, token="hf_test")
    torch.testing.assert_close(option_scores(loaded), option_scores(model))
    assert "A card that travels" in loaded.model_card_text

    # A second commit, sharded; the first stays reachable by its revision.
    other = tiny_model(seed=4)
    other.save_pretrained(tmp_path / "local", max_shard_size=200_000)
    assert (tmp_path / "local" / "model.safetensors.index.json").is_file()
    other.save_pretrained(tmp_path / "pushed", max_shard_size=200_000, push_to_hub=True, repo_id="tester/tiny-sevila")
    assert any(name.startswith("model-00002-of-") for name in fake_hub.repos["tester/tiny-sevila"]["files"])
    latest = from_pretrained("tester/tiny-sevila")
    torch.testing.assert_close(option_scores(latest), option_scores(other))
    again = from_pretrained("tester/tiny-sevila", revision=first)
    torch.testing.assert_close(option_scores(again), option_scores(model))


def test_a_generated_card_and_the_local_directory_load(tmp_path):
    model = tiny_model(seed=5)
    model.save_pretrained(tmp_path / "m")
    card = (tmp_path / "m" / "README.md").read_text()
    assert "library_name: sevila" in card and "@inproceedings{yu2023self" in card
    assert "The paper's numbers" not in card  # not the released checkpoint
    torch.testing.assert_close(option_scores(SeViLA.from_pretrained(tmp_path / "m")), option_scores(model))


def test_autoconfig_knows_sevila_once_the_package_is_imported(tmp_path):
    tiny_model().save_pretrained(tmp_path / "m")
    code = (
        "import sys, sevila; from transformers import AutoConfig; "
        f"c = AutoConfig.from_pretrained({str(tmp_path / 'm')!r}); "
        "print(type(c).__name__, c.model_type, c.to_sevila_config().qformer.num_query_tokens, 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    name, model_type, queries, _ = result.stdout.split()
    assert (name, model_type, int(queries)) == (
        "SeViLATransformersConfig",
        "sevila",
        tiny_model().config.qformer.num_query_tokens,
    )
    light = subprocess.run(
        [sys.executable, "-c", "import sys, sevila; print('transformers' in sys.modules)"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert light.stdout.strip() == "False"  # registering costs nothing until transformers is imported
