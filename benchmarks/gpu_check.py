"""The GPU check, one command on a CUDA machine: parity on the GPU, then the paper-size model's speed and memory.

1. **Parity on CUDA**: the inference parity tests (`tests/test_parity_inference.py`) with the fixture's
   model on the GPU, in float32 with TF32 off — the precision the recordings and their 1e-4 tolerance are
   for (the reduced modes are compared with float32 by `benchmarks.gpu_precision_check`). This module is
   also the pytest plugin that moves the model there (``-p benchmarks.gpu_check``, active only when
   ``$SEVILA_PARITY_DEVICE`` is set).
2. **Paper preset, random weights**, in ``--precision`` (default ``reference``, the original's; ``bf16``
   and ``fp32`` are the others): 2 generated videos x 9 questions through `VideoQA`, per question *cold*
   (empty feature cache: decode, ViT, Q-Formers, store, answer) and *warm* (features from the cache),
   median of ``--repeats``, with the peak GPU memory.
3. One line, ``GPU CHECK: ...``, with the figures.

Without a CUDA device it says so and exits 0 (nothing to check); ``--device cpu --model tiny`` runs the
same steps on the CPU, which is how the script itself is tested.

Usage: ``python -m benchmarks.gpu_check [--precision reference|bf16|fp32] [--model paper] [--repeats 2]
[--skip-parity] [--device cuda]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

DEVICE_ENV = "SEVILA_PARITY_DEVICE"


# ---------------------------------------------------------------------------------------------- pytest plugin
def pytest_configure(config) -> None:
    """With ``$SEVILA_PARITY_DEVICE``: the fixture's model is built there in float32, and comparisons bring
    the result back to the CPU, where the recordings are."""
    device = os.environ.get(DEVICE_ENV)
    if not device:
        return
    import tests.support.parity as parity
    from sevila.model import Precision

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_default_device(device)  # tensors the tests make (token ids, indices) live with the model
    build = parity.Fixture.model
    compare = parity.close

    def model_on_device(self):
        return build(self).to(device).apply_precision(Precision.fp32())

    def close_on_cpu(actual, expected, **tol):
        return compare(actual.detach().cpu(), expected, **tol)

    parity.Fixture.model = model_on_device
    parity.close = close_on_cpu  # before the test modules import it


def run_parity(device: str) -> tuple[int, str]:
    """Run the inference parity tests with the model on ``device``: (exit status, pytest's last line)."""
    command = [sys.executable, "-m", "pytest", "-q", "-m", "parity", "tests/test_parity_inference.py"]
    command += ["-p", "benchmarks.gpu_check", "-p", "no:cacheprovider"]
    done = subprocess.run(command, env={**os.environ, DEVICE_ENV: device}, capture_output=True, text=True, check=False)
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    print("\n".join(lines[-15:]))
    return done.returncode, lines[-1] if lines else "(no output)"


# ---------------------------------------------------------------------------------------------- timing
def build(name: str, device: str, precision: str):
    from sevila.config import SeViLAConfig
    from sevila.model import Precision, SeViLA
    from tests.support.tiny import tiny_tokenizer

    torch.manual_seed(0)
    config = SeViLAConfig.preset(name)
    config.num_frames, config.num_keyframes = 32, 4
    with torch.device(device):  # built where it runs: the paper model is 16.6 GB in float32
        model = SeViLA(config, tokenizer=tiny_tokenizer())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.requires_grad_(False)
    return model.apply_precision(Precision.named(precision, device)).eval()


def time_model(name: str, device: str, precision: str, repeats: int) -> dict:
    from benchmarks.bench_inference import Workload, moving_video, run_once
    from tests.support.tiny import OPTIONS, QUESTION

    model = build(name, device, precision)
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        videos = [moving_video(workdir / f"v{i}.mp4", seed=i) for i in range(2)]
        workload = Workload(videos, [(f"{QUESTION} {j}", OPTIONS[: 2 + j % 4]) for j in range(9)])
        run_once(model, workload, "fast", "cold", workdir / "warm-up")  # first-call costs
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        cold, warm = [], []
        for repeat in range(repeats):
            cold.append(run_once(model, workload, "fast", "cold", workdir / f"cold-{repeat}")[0] / workload.count)
            warm.append(run_once(model, workload, "fast", "warm", workdir / "warm-up")[0] / workload.count)
        peak = torch.cuda.max_memory_allocated() if device.startswith("cuda") else None
    return dict(cold=statistics.median(cold), warm=statistics.median(warm), peak=peak)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="paper", help="preset to time (paper, mid, tiny)")
    parser.add_argument("--precision", default="reference", choices=("reference", "bf16", "fp32"))
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--skip-parity", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be at least 1")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print(f"GPU CHECK: skipped, no CUDA device here (torch {torch.__version__}, cuda {torch.version.cuda})")
        return 0
    started = time.perf_counter()
    parity = "parity skipped"
    status = 0
    if not args.skip_parity:
        status, last = run_parity(args.device)
        parity = f"parity on {args.device} (fp32): {last}"
    figures = time_model(args.model, args.device, args.precision, args.repeats)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    peak = f", peak {figures['peak'] / 2**30:.1f} GiB" if figures["peak"] is not None else ""
    print(
        f"GPU CHECK: {where}; {parity}; {args.model} {args.precision} per question: cold "
        f"{figures['cold'] * 1e3:.0f} ms, warm {figures['warm'] * 1e3:.0f} ms{peak} "
        f"(2 videos x 9 questions, median of {args.repeats}; {time.perf_counter() - started:.0f} s in all)"
    )
    return status


if __name__ == "__main__":
    sys.exit(main())
