"""The loop end to end on a tiny model and tiny videos: every stage, best checkpoints, exact resumption."""

from __future__ import annotations

import json
import logging
import re

import pytest
import torch
import yaml
from safetensors.torch import load_file

from sevila.cli import main
from sevila.data import write_records
from sevila.data.records import QARecord
from sevila.model import SeViLA
from sevila.train import train
from sevila.train.logs import read_metrics
from tests.support.train import (  # noqa: F401 (one_thread is an autouse fixture)
    make_videos,
    one_thread,
    qa_records,
    run_config,
    save_tiny_model,
    tiny_run,
    train_world,
    write_splits,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return train_world(tmp_path_factory.mktemp("train"))


def weights(model: SeViLA) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def check_best(result, world, branch: str) -> None:
    """best/ loads with from_pretrained; only the trained branch differs from the starting model."""
    best = SeViLA.from_pretrained(result.best_dir)
    start = weights(SeViLA.from_pretrained(world["model"]))
    trained = weights(best)
    changed = {k.split(".")[0] for k in start if not torch.equal(start[k], trained[k])}
    assert changed == {branch}
    info = json.loads((result.best_dir / "training.json").read_text())
    assert info["stage"] == result.stage and info[result.metric] == result.best_metric


def loss_lines(run_dir):
    return [m for m in read_metrics(run_dir) if "loss" in m]


def test_pretrain_localizer_through_the_cli(world, tmp_path):
    config = run_config(
        "pretrain-localizer", world["model"], world["videos"], world["moment"], tmp_path / "run", tensorboard=True
    )
    path = tmp_path / "pretrain.yaml"
    path.write_text(yaml.safe_dump(config))
    assert main(["train", str(path)]) == 0
    metrics = read_metrics(tmp_path / "run")
    assert [m["step"] for m in metrics if "loss" in m] == [1, 2, 3, 4]
    assert [m["epoch"] for m in metrics if "val_top1_frame_hit" in m] == [0, 1]
    assert all(0 <= m["val_top1_frame_hit"] <= 1 for m in metrics if "val_top1_frame_hit" in m)
    assert list((tmp_path / "run" / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["metric"] == "val_top1_frame_hit" and summary["global_step"] == 4
    best = SeViLA.from_pretrained(tmp_path / "run" / "best")
    assert not torch.equal(best.localizer.query_tokens, SeViLA.from_pretrained(world["model"]).localizer.query_tokens)


def test_finetune_answerer_on_localizer_keyframes(world, tmp_path):
    result = train(tiny_run("finetune-answerer", world["model"], world["videos"], world["qa"], tmp_path / "run"))
    assert not result.stopped and result.metric == "val_qa_accuracy"
    check_best(result, world, "answerer")
    assert len(loss_lines(tmp_path / "run")) == 4


def test_finetune_answerer_on_uniform_frames_skips_unreadable_videos(world, tmp_path):
    train_path = tmp_path / "train.jsonl"
    broken = QARecord(
        qid="CW_missing_0",
        video="no-such-video",
        dataset="nextqa",
        question="why?",
        options=["a.", "b.", "c.", "d.", "e."],
        answer=0,
    )
    write_records(train_path, qa_records(3, "t") + [broken])
    splits = (train_path, world["qa"][1])
    result = train(
        tiny_run(
            "finetune-answerer",
            world["model"],
            world["videos"],
            splits,
            tmp_path / "run",
            uniform_frames=True,
            batch_size=1,
            epochs=1,
            data__train_frames=2,
            data__eval_frames=2,
        )
    )
    check_best(result, world, "answerer")
    lines = read_metrics(tmp_path / "run")
    assert lines[-1]["skipped_batches"] == 1  # one batch held only the missing video
    assert len(loss_lines(tmp_path / "run")) == 4


def test_refine_localizer_in_two_rounds(world, tmp_path):
    run = tmp_path / "run"
    result = train(tiny_run("refine-localizer", world["model"], world["videos"], world["qa"], run, rounds=2, epochs=1))
    assert [r.run_dir.name for r in result.rounds] == ["round-1", "round-2"]
    round1 = SeViLA.from_pretrained(run / "round-1" / "best")
    assert json.loads((run / "round-2" / "best" / "training.json").read_text())["started_from"] == str(
        run / "round-1" / "best"
    )
    summary = json.loads((run / "summary.json").read_text())
    best_round = summary["best_round"]
    assert result.best_metric == max(r["best_metric"] for r in summary["rounds"])
    best = SeViLA.from_pretrained(run / "best")
    source = SeViLA.from_pretrained(run / f"round-{best_round}" / "best")
    assert torch.equal(best.localizer.query_tokens, source.localizer.query_tokens)
    assert torch.equal(round1.answerer.query_tokens, best.answerer.query_tokens)  # only the localizer trains
    check_best(result, world, "localizer")


def test_resumed_run_ends_with_exactly_the_uninterrupted_weights(world, tmp_path):
    """Mid-epoch kill (no checkpoint at the kill) and resume: bitwise the same weights and losses, with
    dropout, random frame sampling and crops, and gradient accumulation all active."""
    splits = write_splits(tmp_path, "qa", train=12, val=2)
    common = dict(
        batch_size=1,
        grad_accum_steps=2,
        epochs=2,
        data__train_frames=3,
        num_keyframes=2,
        checkpoint_every_steps=4,
        log_every_steps=3,
    )
    full = train(tiny_run("finetune-answerer", world["model"], world["videos"], splits, tmp_path / "full", **common))

    killed = tiny_run(
        "finetune-answerer", world["model"], world["videos"], splits, tmp_path / "killed", stop_after_steps=5, **common
    )
    assert train(killed).stopped  # 6 optimizer steps per epoch: killed at step 5, last checkpoint at step 4
    state = json.loads((tmp_path / "killed" / "checkpoint" / "state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"], state["global_step"]) == (0, 4, 4)
    with pytest.raises(ValueError, match="already holds a run"):
        train(killed)
    resumed = tiny_run(
        "finetune-answerer", world["model"], world["videos"], splits, tmp_path / "killed", resume=True, **common
    )
    result = train(resumed)
    assert result.rounds[-1].global_step == 12

    a = SeViLA.from_pretrained(full.best_dir)
    b = SeViLA.from_pretrained(result.best_dir)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))
    last_a = torch.load(tmp_path / "full" / "checkpoint" / "optimizer.pt", weights_only=True)
    last_b = torch.load(tmp_path / "killed" / "checkpoint" / "optimizer.pt", weights_only=True)
    assert all(torch.equal(last_a["state"][i]["exp_avg"], last_b["state"][i]["exp_avg"]) for i in last_a["state"])
    final_a = load_file(tmp_path / "full" / "checkpoint" / "trainable.safetensors")
    final_b = load_file(tmp_path / "killed" / "checkpoint" / "trainable.safetensors")
    assert final_a.keys() == final_b.keys() and all(torch.equal(final_a[k], final_b[k]) for k in final_a)
    metrics = read_metrics(tmp_path / "killed")
    assert [m["step"] for m in metrics if "loss" in m] == [3, 6, 9, 12]  # step 6: the mean over steps 4-6
    assert metrics == read_metrics(tmp_path / "full")


def test_resume_refuses_a_changed_batch_layout(world, tmp_path):
    run = tiny_run(
        "pretrain-localizer",
        world["model"],
        world["videos"],
        world["moment"],
        tmp_path / "run",
        epochs=1,
        stop_after_steps=1,
        checkpoint_every_steps=1,
    )
    assert train(run).stopped
    changed = tiny_run(
        "pretrain-localizer",
        world["model"],
        world["videos"],
        world["moment"],
        tmp_path / "run",
        epochs=1,
        batch_size=1,
        resume=True,
    )
    with pytest.raises(ValueError, match="batch_size=2"):
        train(changed)
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        train(
            tiny_run(
                "pretrain-localizer", world["model"], world["videos"], world["moment"], tmp_path / "new", resume=True
            )
        )


def test_records_of_the_wrong_kind_are_refused_before_any_training(world, tmp_path):
    with pytest.raises(ValueError, match="MomentRecord; this stage trains on QARecords"):
        train(tiny_run("refine-localizer", world["model"], world["videos"], world["moment"], tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_cached_vit_states_train_like_encoding_every_step(world, tmp_path, caplog):
    """cache_vision_states (whole frames, data.augment false) gives the losses and weights of a run that
    encodes every frame anew, up to summation order."""
    common = dict(data__augment=False, epochs=2)
    plain = train(
        tiny_run("finetune-answerer", world["model"], world["videos"], world["qa"], tmp_path / "plain", **common)
    )
    with caplog.at_level(logging.INFO, logger="sevila.train.loop"):
        cached = train(
            tiny_run(
                "finetune-answerer",
                world["model"],
                world["videos"],
                world["qa"],
                tmp_path / "cached",
                cache_vision_states=True,
                **common,
            )
        )
    reused = re.search(r"ViT states: (\d+) frames reused, (\d+) encoded", caplog.text)
    assert reused and int(reused[1]) > 0  # validation's uniform frames come back every epoch at least
    losses = [[m["loss"] for m in loss_lines(run.run_dir)] for run in (plain, cached)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    a, b = SeViLA.from_pretrained(plain.best_dir), SeViLA.from_pretrained(cached.best_dir)
    for x, y in zip(a.answerer.parameters(), b.answerer.parameters(), strict=True):
        torch.testing.assert_close(x, y, atol=1e-5, rtol=1e-4)
