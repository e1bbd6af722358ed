"""`python -m sevila_toy.demo.check_shipped`: the shipped model on a world of a seed the build never used."""

from __future__ import annotations

import re

import pytest

from sevila.hub import DEMO_DIR
from sevila_toy.demo.build import BACKBONE_SCENES_SEED
from sevila_toy.demo.check_shipped import main, seeds_used_by_the_build

pytestmark = pytest.mark.toy


@pytest.mark.parametrize("seed", [0, 2, BACKBONE_SCENES_SEED])
def test_a_seed_the_build_uses_is_refused_in_one_line(seed, capsys):
    assert seed in seeds_used_by_the_build()
    assert main(["--seed", str(seed)]) == 2
    assert capsys.readouterr().err == f"error: seed {seed} is one the demo build uses; choose another\n"


def test_a_question_count_below_one_is_refused(capsys):
    assert main(["--seed", "1234", "--questions", "0"]) == 2
    assert capsys.readouterr().err == "error: --questions must be positive, got 0\n"


@pytest.mark.skipif(not (DEMO_DIR / "model").is_dir(), reason="the shipped demo model is not installed")
def test_it_answers_the_asked_number_of_questions_and_reports_chance(capsys):
    assert main(["--seed", "1234", "--questions", "3"]) == 0
    line = capsys.readouterr().out.strip()
    found = re.fullmatch(
        r"model demo, world of seed 1234 \(.+ questions\): (\d)/3 right = ([\d.]+)%; chance ([\d.]+)%; ([\d.]+)x chance",
        line,
    )
    assert found, line
    right, accuracy, chance, ratio = int(found[1]), float(found[2]), float(found[3]), float(found[4])
    assert accuracy == pytest.approx(100 * right / 3, abs=0.05)
    assert 20.0 <= chance <= 50.0  # 2 to 5 options a question
    assert ratio == pytest.approx(accuracy / chance, abs=0.01)
