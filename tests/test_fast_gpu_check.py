"""`benchmarks/gpu_check.py` off a GPU: it says it has nothing to check, refuses bad arguments, and its pytest
plugin stays inactive unless asked."""

import pytest
import torch

from benchmarks import gpu_check
from sevila.model import Precision
from tests.support.tiny import tiny_model


def test_without_cuda_it_skips_and_succeeds(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main([]) == 0
    assert capsys.readouterr().out.startswith("GPU CHECK: skipped, no CUDA device here")


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--precision", "fp16"], ["--device", "cpu", "--repeats", "-1"]])
def test_bad_arguments_are_refused(argv, capsys):
    with pytest.raises(SystemExit) as exit:
        gpu_check.main(argv)
    assert exit.value.code == 2 and "error:" in capsys.readouterr().err


def test_the_parity_plugin_changes_nothing_unless_asked(monkeypatch):
    import tests.support.parity as parity

    monkeypatch.delenv(gpu_check.DEVICE_ENV, raising=False)
    model, close = parity.Fixture.model, parity.close
    gpu_check.pytest_configure(None)
    assert parity.Fixture.model is model and parity.close is close


def test_the_parity_plugin_moves_the_fixture_model_and_compares_on_the_cpu(monkeypatch):
    import tests.support.parity as parity

    monkeypatch.setenv(gpu_check.DEVICE_ENV, "cpu")
    monkeypatch.setattr(parity.Fixture, "model", lambda self: tiny_model().apply_precision(Precision.reference()))
    monkeypatch.setattr(parity, "close", lambda actual, expected, **tol: (actual.device.type, expected))
    monkeypatch.setattr(torch, "set_default_device", lambda device: None)
    gpu_check.pytest_configure(None)
    model = parity.Fixture.model(None)
    assert model.precision.name == "fp32" and model.device.type == "cpu"
    assert parity.close(torch.ones(1), "recorded") == ("cpu", "recorded")
