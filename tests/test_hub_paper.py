"""`sevila convert --from-hub`: the paper's model from a prepared hub cache with no network (``HF_HUB_OFFLINE``),
revisions pinned, a model card that `VideoQA.load` reads past; unreachable files fail in one line."""

import json

import huggingface_hub.constants as hub_constants
import pytest
import torch

from sevila import cli
from sevila.config import SeViLAConfig
from sevila.convert import convert_paper_model
from sevila.hub import BLIP2_HUB_ID, PAPER_CHECKPOINT, SEVILA_HUB_ID
from sevila.inference import VideoQA
from sevila.utils.errors import CheckpointError
from tests.support.fake_hub import cache_snapshot
from tests.support.tiny import write_tiny_blip2
from tests.test_convert_streaming import write_lavis_checkpoint

SEVILA_REV = "1" * 40
BLIP2_REV = "2" * 40
OLD_REV = "3" * 40


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """The two released repositories as the hub client caches them; the client offline."""
    config = SeViLAConfig.preset("tiny")
    write_tiny_blip2(tmp_path / "blip2", config, shards=2)
    write_lavis_checkpoint(tmp_path / "new.pth", seed=7)
    write_lavis_checkpoint(tmp_path / "old.pth", seed=8)
    cache = tmp_path / "cache"
    cache_snapshot(cache, SEVILA_HUB_ID, {PAPER_CHECKPOINT: tmp_path / "new.pth"}, SEVILA_REV)
    cache_snapshot(cache, SEVILA_HUB_ID, {PAPER_CHECKPOINT: tmp_path / "old.pth"}, OLD_REV, refs=("v0",))
    cache_snapshot(cache, BLIP2_HUB_ID, {"": tmp_path / "blip2"}, BLIP2_REV)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return cache


def test_convert_from_hub_writes_a_loadable_model_with_its_card(tmp_path, hub_cache, capsys):
    out = tmp_path / "paper"
    assert cli.main(["convert", "--from-hub", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    card = (out / "README.md").read_text()
    assert card.startswith("---\n") and "library_name: sevila" in card and f"base_model: {BLIP2_HUB_ID}" in card
    assert f"`{PAPER_CHECKPOINT}` from `{SEVILA_HUB_ID}` at revision `{SEVILA_REV}`" in card
    assert f"from `{BLIP2_HUB_ID}` at revision `{BLIP2_REV}`" in card
    for needed in ("63.6", "BSD 3-Clause", "MIT", "@inproceedings{yu2023self"):
        assert needed in card
    record = json.loads((out / "provenance.json").read_text())
    assert record["sources"][0]["revision"] == SEVILA_REV and record["sources"][1]["revision"] == BLIP2_REV

    qa = VideoQA.load(out)
    assert "63.6" in qa.model.model_card_text  # kept for push_to_hub
    expected = torch.load(tmp_path / "new.pth", weights_only=True)["model"]["query_tokens_loc"]
    torch.testing.assert_close(qa.model.localizer.query_tokens.detach().float(), expected.float())


def test_revisions_are_pinned(tmp_path, hub_cache):
    convert_paper_model(tmp_path / "old", revision="v0", base_revision=BLIP2_REV)
    record = json.loads((tmp_path / "old" / "provenance.json").read_text())
    assert record["sources"][0]["revision"] == OLD_REV
    expected = torch.load(tmp_path / "old.pth", weights_only=True)["model"]["query_tokens"]
    loaded = VideoQA.load(tmp_path / "old").model.answerer.query_tokens.detach()
    torch.testing.assert_close(loaded.float(), expected.float())


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--revision", "f" * 40], f"could not get {PAPER_CHECKPOINT} of {SEVILA_HUB_ID} at revision {'f' * 40}"),
        (["--base-revision", "v9"], f"could not get {BLIP2_HUB_ID} at revision v9"),
    ],
)
def test_what_is_not_in_the_cache_fails_in_one_line_naming_it(tmp_path, hub_cache, capsys, args, named):
    assert cli.main(["convert", "--from-hub", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and named in err and "HF_HUB_OFFLINE is set" in err, err


def test_an_empty_cache_offline_fails_before_any_conversion(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=f"could not get {PAPER_CHECKPOINT} of {SEVILA_HUB_ID} from"):
        convert_paper_model(tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert cli.main(["convert", "--from-hub", str(tmp_path / "out"), "--base", "x/y"]) == 2
    assert "--from-hub takes only OUT_DIR" in capsys.readouterr().err


def test_without_a_network_it_fails_fast_or_uses_the_cache(tmp_path, hub_cache, monkeypatch, capsys):
    """No HF_HUB_OFFLINE, and the Hub refuses connections: one probe, no retries; the cache still serves."""
    import socket
    import time

    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(hub_constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    convert_paper_model(tmp_path / "cached")  # both repositories are in the cache
    assert (tmp_path / "cached" / "README.md").is_file()

    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty"))
    start = time.monotonic()
    assert cli.main(["convert", "--from-hub", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert time.monotonic() - start < 5, "the hub client's retries ran"
    assert len(err.splitlines()) == 1, err
    assert f"could not get {PAPER_CHECKPOINT} of {SEVILA_HUB_ID}" in err and f"127.0.0.1:{port} is unreachable" in err
