"""The toy demo builder (`sevila_toy.demo`): backbone frame and text tasks, oracle keyframes, the build's smoke runs.

The shipped demo model itself is tested in test_cli_demo.py, without the builder."""

import json

import numpy as np
import pytest
import torch

from sevila_toy.demo.ablations import oracle_positions
from sevila_toy.demo.frame_tasks import frame_tasks, visible_objects
from sevila_toy.synth.evidence import Evidence
from sevila_toy.synth.generate import plan_world

pytestmark = pytest.mark.toy


def test_frame_tasks_describe_what_is_visible():
    scene = plan_world(3, seed=7)[0].scene
    event = scene.events[0]
    frame = (event.first + event.last) // 2
    objects = visible_objects(scene, frame)
    tasks = frame_tasks(scene, frame, np.random.default_rng(0))
    caption = tasks[0]
    assert caption.prompt == "Describe the frame."
    assert caption.target == " and ".join(f"a {o.colour} {o.shape}" for o in objects)
    assert [o.x for o in objects] == sorted(o.x for o in objects)
    yes_no = tasks[-1]
    assert yes_no.target in ("yes", "no")
    named = yes_no.prompt.split("Is there a ")[1].split("?")[0]
    assert (yes_no.target == "yes") == any(f"{o.colour} {o.shape}" == named for o in objects)
    for task in tasks[1:-1]:
        assert task.target.startswith("Option ") and task.prompt.startswith("Question: ")
    assert not caption.choices and all(task.target in task.choices for task in tasks[1:])
    single = [o for o in objects if o.colour != "white"]
    generic = [t for t in tasks if "What colour is the shape?" in t.prompt]
    assert len(generic) == (len(single) == 1)
    if generic:
        letter = generic[0].target[-1]
        assert f"Option {letter}: {single[0].colour} " in generic[0].prompt


def test_tasks_about_several_frames_are_about_all_they_show():
    from sevila_toy.demo.backbone import render_all
    from sevila_toy.demo.frame_tasks import sample_tasks

    world = plan_world(6, seed=7)
    scenes = [v.scene for v in world]
    scene = next(s for s in scenes if len(s.events) >= 2)
    first, second = [(e.first + e.last) // 2 for e in scene.events[:2]]
    together = visible_objects(scene, [first, second])
    apart = visible_objects(scene, first) + visible_objects(scene, second)
    assert {(o.colour, o.shape) for o in together} == {(o.colour, o.shape) for o in apart}
    assert len(together) <= len(apart)  # a shape seen in both frames counts once
    frames = render_all(scenes)
    for pixels, task in sample_tasks(scenes, frames, 20, np.random.default_rng(0), frames_per_task=4):
        assert pixels.shape == (4, *frames.shape[2:]) and task.prompt


def test_every_kind_of_frame_question_is_asked():
    """Each kind the video questions need (direction included: a moving shape is named by its own look, not
    its trail's) appears, and yes/no "no"s often name a colour that is there on a shape that is not."""
    from sevila_toy.synth.world import Move

    kinds, shape_decides, answers = set(), 0, []
    rng = np.random.default_rng(0)
    for v in plan_world(40, seed=5):
        for event in v.scene.events:
            frame = (event.first + event.last) // 2
            for task in frame_tasks(v.scene, frame, rng):
                kinds.add(task.kind)
                if task.kind == "direction" and isinstance(event, Move):
                    answers.append(task.option_texts[task.choices.index(task.target)] == event.direction)
                if task.kind == "yes/no" and task.target == "no":
                    colour = task.prompt.split("Is there a ")[1].split()[0]
                    shape_decides += colour in {o.colour for o in visible_objects(v.scene, frame)}
    assert kinds == {"caption", "colour", "shape", "count", "direction", "yes/no"}
    assert answers and all(answers)
    assert shape_decides >= 10


def test_frame_facts_name_what_is_visible_and_vision_pretraining_trains_the_vit_alone():
    import torch

    from sevila.model import SeViLA
    from sevila_toy.demo.build import toy_tokenizer
    from sevila_toy.demo.vision_pretraining import FACTS, UNKNOWN, frame_facts, pretrain_vision
    from sevila_toy.preset import toy_config
    from sevila_toy.synth.world import Flash, Move

    world = plan_world(8, seed=3)
    scene, flash = next((v.scene, e) for v in world for e in v.scene.events if isinstance(e, Flash))
    facts = frame_facts(scene, (flash.first + flash.last) // 2)
    assert FACTS["white shapes"][facts["white shapes"]] == flash.count
    assert FACTS["colour"][facts["colour"]] == "none" and facts["direction"] == UNKNOWN
    scene, move = next((v.scene, e) for v in world for e in v.scene.events if isinstance(e, Move))
    facts = frame_facts(scene, move.last)
    assert (FACTS["colour"][facts["colour"]], FACTS["shape"][facts["shape"]]) == (move.colour, move.shape)
    assert FACTS["direction"][facts["direction"]] == move.direction and facts["white shapes"] == 0

    torch.manual_seed(0)
    model = SeViLA(toy_config(), tokenizer=toy_tokenizer())
    t5 = {k: v.clone() for k, v in model.language_model.state_dict().items()}
    vit = {k: v.clone() for k, v in model.vision.state_dict().items()}
    losses, accuracy = pretrain_vision(
        model, steps=3, batch_size=4, progress=False, scenes_per_draw=6, steps_per_draw=2, check_frames=70
    )
    assert len(losses) == 3 and all(np.isfinite(losses))
    assert set(accuracy) == set(FACTS) and all(0 <= a <= 100 for a in accuracy.values())
    assert any(not torch.equal(v, model.vision.state_dict()[k]) for k, v in vit.items())
    assert all(torch.equal(v, model.language_model.state_dict()[k]) for k, v in t5.items())


def test_a_fact_no_frame_of_the_batch_settles_adds_nothing_to_the_vision_loss():
    """A batch without a moving shape must not give a NaN loss (which would poison the ViT's weights)."""
    import torch

    from sevila_toy.demo.vision_pretraining import FACTS, UNKNOWN, _loss

    logits = {name: torch.randn(3, len(classes)) for name, classes in FACTS.items()}
    targets = {name: torch.zeros(3, dtype=torch.long) for name in FACTS}
    targets["direction"] = torch.full((3,), UNKNOWN)
    loss = _loss(logits, targets)
    expected = sum(torch.nn.functional.cross_entropy(logits[n], targets[n]) for n in FACTS if n != "direction")
    assert torch.isfinite(loss) and torch.allclose(loss, expected)


def test_backbone_accuracy_is_measured_per_kind_of_task():
    import torch

    from sevila.model import SeViLA
    from sevila_toy.demo.backbone import frame_task_accuracy
    from sevila_toy.demo.build import toy_tokenizer
    from sevila_toy.preset import toy_config

    torch.manual_seed(0)
    model = SeViLA(toy_config(), tokenizer=toy_tokenizer())
    scenes = [v.scene for v in plan_world(4, seed=3)]
    first = frame_task_accuracy(model, scenes, count=30)
    assert {"yes/no, 1 frame", "yes/no, 4 frames"} <= set(first)
    assert {kind.split(", ")[0] for kind in first} <= {"colour", "shape", "count", "direction", "yes/no"}
    assert all(0 <= value <= 100 for value in first.values())
    assert frame_task_accuracy(model, scenes, count=30) == first  # deterministic for a seed


def test_text_option_tasks_look_up_options_both_ways():
    from sevila_toy.demo.build import toy_tokenizer
    from sevila_toy.demo.text_tasks import option_task

    rng = np.random.default_rng(0)
    reverse = [option_task(rng, 2, reverse_share=1.0) for _ in range(50)]
    assert all(t.prompt.count(" Option ") == 2 and "What is option" in t.prompt for t in reverse)
    for task in reverse:  # the reverse lookup's target is the word its letter labels
        letter = task.prompt.split("What is option ")[1][0]
        assert f"Option {letter}: {task.target}" in task.prompt and task.target in task.choices
    mixed = [option_task(rng) for _ in range(300)]
    forward = [t for t in mixed if t.target.startswith("Option ")]
    assert 0.5 < len(forward) / len(mixed) < 0.9 and max(t.prompt.count(" Option ") for t in mixed) == 5
    for task in forward:  # the forward lookup's target is the letter of the word asked about
        word = task.prompt.split("Which option is ")[1].split("?")[0]
        assert f"{task.target}: {word}" in task.prompt and task.target in task.choices
    tokenizer = toy_tokenizer()  # every word of these tasks is a known word of the toy vocabulary
    for task in reverse[:5] + forward[:5]:
        assert tokenizer.unk_token_id not in tokenizer(task.prompt).input_ids, task.prompt


def test_language_pretraining_trains_t5_alone_and_stops_at_mastery(monkeypatch):
    import torch

    import sevila_toy.demo.backbone as backbone
    import sevila_toy.demo.text_tasks as text_tasks
    from sevila.model import SeViLA
    from sevila_toy.demo.build import toy_tokenizer
    from sevila_toy.preset import toy_config

    torch.manual_seed(0)
    model = SeViLA(toy_config(), tokenizer=toy_tokenizer())
    vision = {k: v.clone() for k, v in model.vision.state_dict().items()}
    t5 = {k: v.clone() for k, v in model.language_model.state_dict().items()}
    # One more option every step, and every check finds the lookup mastered: training stops at the first
    # check with five options.
    checked = []
    monkeypatch.setattr(text_tasks, "STEPS_PER_EXTRA_OPTION", 1)
    monkeypatch.setattr(
        backbone, "option_lookup_accuracy", lambda model, options, count, seed: checked.append(options) or 100.0
    )
    losses, accuracy = backbone.pretrain_language_model(
        model, max_steps=50, batch_size=4, check_every=2, progress=False
    )
    assert checked == [3, 5] and len(losses) == 4 and accuracy == 100.0 and all(np.isfinite(losses))
    assert all(torch.equal(v, model.vision.state_dict()[k]) for k, v in vision.items())
    assert any(not torch.equal(v, model.language_model.state_dict()[k]) for k, v in t5.items())

    # A T5 that stays at chance is replaced by a fresh one from the next seed.
    results = iter([25.0] * 3 + [95.0] * 2)
    monkeypatch.setattr(backbone, "option_lookup_accuracy", lambda model, options, count, seed: next(results))
    first = model.language_model
    tried = backbone.pretrain_language_model_with_restarts(
        model, [5, 6, 7], max_steps=6, batch_size=2, check_every=2, progress=False
    )
    assert tried == {5: {"steps": 6, "lookup_among_five": 25.0}, 6: {"steps": 4, "lookup_among_five": 95.0}}
    assert model.language_model is not first
    monkeypatch.undo()
    accuracy = backbone.option_lookup_accuracy(model, count=20)
    assert 0 <= accuracy <= 100 and backbone.option_lookup_accuracy(model, count=20) == accuracy


def test_oracle_keyframes_cover_every_evidence_window():
    times = [i * 0.25 for i in range(32)]
    two = Evidence("q", "v", [[1.0, 1.5], [6.0, 6.25]], [[8, 9, 10, 11, 12], [48, 49, 50]])
    picked = oracle_positions(two, times, 4)
    assert picked == sorted(picked) and len(picked) == 4
    assert any(1.0 <= times[p] <= 1.5 for p in picked) and any(6.0 <= times[p] <= 6.25 for p in picked)
    one = Evidence("q", "v", [[2.0, 2.25]], [[16, 17, 18]])  # two candidates inside: topped up by nearest
    picked = oracle_positions(one, times, 4)
    assert {8, 9} <= set(picked) and len(picked) == 4


# ---------------------------------------------------------------------------------------- the build itself
# Two smoke builds (``--quick``) serve every test that reads a finished build, each built once for this module:
# `parallel_build` as a build of several seeds runs (the backbone's language and vision pre-training side by side,
# then the seeds in worker processes), `serial_build` as ``--jobs 1`` runs (every step in this process). A test that
# builds further works on a copy, so that no test sees another's changes.


@pytest.fixture(scope="module")
def parallel_build(tmp_path_factory):
    from sevila_toy.demo.build import main

    out = tmp_path_factory.mktemp("parallel-build")
    assert main(["--out", str(out), "--seeds", "1", "0", "--quick", "--jobs", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def serial_build(tmp_path_factory):
    from sevila_toy.demo.build import main

    out = tmp_path_factory.mktemp("serial-build")
    assert main(["--out", str(out), "--seeds", "0", "--quick", "--jobs", "1"]) == 0
    return out


@pytest.mark.slow
def test_pipeline_smoke_run(serial_build, tmp_path, capsys):
    """The smoke build's table and stages, then the command again on (a copy of) the finished build: it resumes,
    writes the table of the seeds asked for and ships the first seed's model."""
    import shutil

    from sevila.model import SeViLA
    from sevila_toy.demo.build import main

    run, ship = tmp_path / "run", tmp_path / "ship"
    shutil.copytree(serial_build, run)
    assert main(["--out", str(run), "--seeds", "0", "--quick", "--ship", str(ship)]) == 0
    # The model in the layout of the shipped demo, written where it was asked for (never into the package).
    assert SeViLA.from_pretrained(ship / "model").config.vision.image_size == 64
    example = json.loads((ship / "example.json").read_text())
    assert (ship / example["video"]).is_file() and example["question"] and example["answer"] is not None
    capsys.readouterr()
    assert main(["--out", str(run), "--seeds", "0", "--quick", "--ship", str(ship)]) == 2  # not empty
    assert capsys.readouterr().err.startswith(f"error: --ship {ship}: exists and is not an empty folder")
    table = (run / "ablations.md").read_text()
    assert "4 oracle keyframes of 32" in table and "self-refined localizer" in table
    scores = json.loads((run / "ablations.json").read_text())["0"]
    assert len(scores) == 5 and all(0 <= s["accuracy"] <= 100 for s in scores.values())
    assert scores["4 oracle keyframes of 32"]["evidence_hit"] == 100.0
    from sevila_toy.synth.questions import QUESTION_TYPES

    by_type = scores["4 oracle keyframes of 32"]["accuracy_by_type"]
    assert by_type and set(by_type) <= set(QUESTION_TYPES) and all(0 <= v <= 100 for v in by_type.values())
    assert "QA accuracy (%) by question type" in table
    for stage in ("pretrain-localizer", "finetune-answerer", "uniform", "refine-localizer"):
        assert (run / "seed0" / stage / "best" / "model.safetensors").is_file()


@pytest.mark.slow
def test_seeds_are_built_by_parallel_processes_each_with_its_log(parallel_build):
    assert list(json.loads((parallel_build / "ablations.json").read_text())) == ["1", "0"]  # the order asked for
    assert "(2 seeds: 1, 0)" in (parallel_build / "ablations.md").read_text()
    for seed in (0, 1):
        assert (parallel_build / f"seed{seed}" / "refine-localizer" / "best" / "model.safetensors").is_file()
        log = (parallel_build / f"seed{seed}.log").read_text()
        assert f"seed {seed}: refine-localizer done" in log and "epoch 1 step" in log  # its log, plain progress lines


@pytest.mark.slow
def test_language_and_vision_pre_training_side_by_side_give_the_serial_backbone(serial_build, parallel_build):
    """The two run in worker processes from their own seeds and train disjoint weights, so putting their weights
    together gives the backbone the one-process build gives (up to float rounding of one thread against several)."""
    from sevila.model import SeViLA
    from sevila_toy.demo import build

    serial = SeViLA.from_pretrained(serial_build / "backbone")  # build_backbone(..., QUICK, False, parallel=False)
    side_by_side = SeViLA.from_pretrained(parallel_build / "backbone")  # build_backbone(..., QUICK, False)
    fresh = build._fresh_toy_model()
    for name, weights in serial.state_dict().items():
        assert torch.allclose(weights, side_by_side.state_dict()[name], atol=1e-5), name
    trained = [name for name, w in serial.state_dict().items() if not torch.equal(w, fresh.state_dict()[name])]
    assert any(n.startswith("language_model.") for n in trained) and any(n.startswith("vision.") for n in trained)
    for part in ("language", "vision"):
        assert (parallel_build / f"backbone-{part}.log").read_text().strip()  # each worker's own log
    report = json.loads((parallel_build / "backbone_accuracy.json").read_text())
    assert report["language_model"]["seeds_tried"] and report["vision"]["facts_read_on_unseen_frames"]


@pytest.mark.slow
def test_a_backbone_that_cannot_read_colours_stops_the_build(tmp_path):
    """No table of chance rows from a backbone whose frame pre-training did not take: the build stops before any
    stage, says why and where the rejected backbone and its accuracy are, and keeps no backbone a rerun would use."""
    from dataclasses import replace

    from sevila_toy.demo import build

    with pytest.raises(build.BackboneNotLearned, match=r"backbone-rejected: .*colour questions.*below"):
        build.build_backbone(tmp_path, replace(build.QUICK, min_colour_accuracy=101.0), progress=False)
    report = json.loads((tmp_path / "backbone-rejected_accuracy.json").read_text())
    assert build.COLOUR_CHECK in report["accuracy"]
    assert (tmp_path / "backbone-rejected" / "config.json").is_file()
    assert not (tmp_path / "backbone").exists() and not (tmp_path / "backbone_accuracy.json").exists()


@pytest.mark.slow
def test_frame_tasks_that_did_not_take_start_again_from_the_next_seed(tmp_path, monkeypatch):
    from dataclasses import replace

    from sevila_toy.demo import build

    real = build.frame_task_accuracy
    colour = iter([10.0, 100.0])  # the first try stalls, the second takes

    def measured(model, scenes, count):
        return {**real(model, scenes, count=count), build.COLOUR_CHECK: next(colour)}

    monkeypatch.setattr(build, "frame_task_accuracy", measured)
    settings = replace(build.QUICK, frame_seeds=(3, 4), min_colour_accuracy=50.0)
    backbone = build.build_backbone(tmp_path, settings, progress=False, parallel=False)
    report = json.loads((tmp_path / "backbone_accuracy.json").read_text())
    assert report["frame_seed"] == 4 and list(report["rejected_frame_seeds"]) == ["3"]
    assert report["accuracy"][build.COLOUR_CHECK] == 100.0 and report["language_model"] and report["vision"]
    assert (backbone / "config.json").is_file() and (tmp_path / "backbone-rejected" / "config.json").is_file()
    rejected = json.loads((tmp_path / "backbone_rejections.json").read_text())
    assert rejected["3"]["accuracy"][build.COLOUR_CHECK] == 10.0


@pytest.mark.slow
def test_a_resumed_build_skips_the_pre_training_and_frame_seeds_already_done(tmp_path, monkeypatch):
    from dataclasses import replace

    from sevila_toy.demo import build

    settings = replace(build.QUICK, frame_seeds=(0, 1), min_colour_accuracy=101.0)
    with pytest.raises(build.BackboneNotLearned, match=r"every seed of Settings.frame_seeds \(0, 1\)"):
        build.build_backbone(tmp_path, settings, progress=False, parallel=False)
    assert list(json.loads((tmp_path / "backbone_rejections.json").read_text())) == ["0", "1"]

    def must_not_run(*args, **kwargs):
        raise AssertionError("a finished step ran again")

    for step in ("pretrain_language_part", "pretrain_vision_part", "pretrain_backbone"):
        monkeypatch.setattr(build, step, must_not_run)
    with pytest.raises(build.BackboneNotLearned):  # both seeds were set aside already
        build.build_backbone(tmp_path, settings, progress=False, parallel=False)
    monkeypatch.undo()
    wider = replace(settings, frame_seeds=(0, 1, 2), min_colour_accuracy=0.0)  # one more seed: only it runs
    monkeypatch.setattr(build, "pretrain_language_part", must_not_run)
    assert (build.build_backbone(tmp_path, wider, progress=False, parallel=False) / "config.json").is_file()
    assert json.loads((tmp_path / "backbone_accuracy.json").read_text())["frame_seed"] == 2


@pytest.mark.slow
def test_the_build_command_reports_an_unlearned_backbone_in_one_line(tmp_path, monkeypatch, capsys):
    from dataclasses import replace

    from sevila_toy.demo import build

    monkeypatch.setattr(build, "QUICK", replace(build.QUICK, min_colour_accuracy=101.0))
    assert build.main(["--out", str(tmp_path), "--seeds", "0", "--quick"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {tmp_path / 'backbone-rejected'}: ") and "\n" not in error
    assert not (tmp_path / "seed0").exists()  # no stage ran on it


@pytest.mark.slow
def test_the_self_refinement_diagnosis_runs_on_a_finished_seed(serial_build, tmp_path, monkeypatch, capsys):
    """python -m benchmarks.diagnose_self_refinement on a smoke build: pseudo-label quality by question type, then the
    refinement stage on pseudo-labels and on perfect labels, each measured on the test split."""
    import runpy
    import sys

    capsys.readouterr()
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "diagnose_self_refinement",
            str(serial_build / "seed0"),
            "--out",
            str(tmp_path / "d"),
            "--lrs",
            "1e-4",
            "--threads",
            "1",
        ],
    )
    threads = torch.get_num_threads()
    try:
        runpy.run_module("benchmarks.diagnose_self_refinement", run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # the script sets its own; the tests after it keep theirs
    printed = capsys.readouterr().out
    assert "precision" in printed and "base rate" in printed and "all:" in printed
    rows = [line for line in printed.splitlines() if "refined on" in line]
    assert len(rows) == 4 and sum("perfect labels" in row for row in rows) == 2
    for row in rows:
        accuracy, hit, precision = map(float, row.split()[-3:])
        assert 0 <= accuracy <= 100 and 0 <= hit <= 100 and 0 <= precision <= 100
