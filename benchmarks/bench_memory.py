"""Peak memory (resident set size) of `sevila convert --base` and of loading the converted model.

Each measurement runs in a fresh Python process of its own; its peak RSS is the ``ru_maxrss`` that
``os.wait4`` returns for that process (this parent imports neither torch nor sevila, so the child starts
small). Measured, on random weights in the real formats and dtypes:

1. ``convert``: `sevila convert sevila_pretrained.pth OUT --base BLIP2_DIR` (default shard size), where
   BLIP2_DIR is a transformers BLIP-2 directory of float32 safetensors shards (as the hub serves
   ``Salesforce/blip2-flan-t5-xl``) and the ``.pth`` holds what ``sevila_pretrained.pth`` holds: both
   branches' ``ln_vision*``, ``query_tokens*``, ``Qformer*`` (+ ``position_ids``) and ``t5_proj*`` in float32;
2. ``load bf16``: ``from_pretrained(OUT)`` with the ViT and T5 stored in bf16, the Q-Formers in float32;
3. ``load fp32``: ``from_pretrained(OUT)`` all in float32;
plus ``imports``: a process that only imports torch, transformers and sevila (the floor of every row).

"weights" is the memory the loaded model's tensors take (each storage once); "peak - weights" what loading
needed on top of them. Inputs are generated once into ``--dir`` (a BLIP-2 directory written shard by shard,
2 GB at a time, and the .pth) and reused by later runs; the converted model is removed afterwards unless
``--keep-output``. A step that would need more memory than the machine has available is skipped (``--force``
runs it anyway).

Usage: python -m benchmarks.bench_memory [--preset paper|mid] [--dir DIR] [--steps convert,bf16,fp32]
(the paper preset needs ~34 GB of disk, ~17 GB of free memory for the fp32 load, and a few minutes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GENERATED_SHARD_BYTES = 2 * 10**9
STEPS = ("imports", "convert", "bf16", "fp32")


# ---------------------------------------------------------------------------------------------- children
def _lavis_key(key: str) -> str:
    """Our branch key -> its LAVIS name (the inverse of `sevila.convert.lavis.LAVIS_RULES` for the branches)."""
    import re

    branch, _, rest = key.partition(".")
    suffix = {"answerer": "", "localizer": "_loc"}[branch]
    if rest.startswith("layernorm."):
        return f"ln_vision{suffix}.{rest[len('layernorm.') :]}"
    if rest.startswith("projection."):
        return f"t5_proj{suffix}.{rest[len('projection.') :]}"
    if rest == "query_tokens":
        return f"query_tokens{suffix}"
    if rest.startswith("qformer.layernorm."):
        return f"Qformer{suffix}.bert.embeddings.LayerNorm.{rest[len('qformer.layernorm.') :]}"
    layer = re.fullmatch(r"qformer\.encoder\.layer\.(\d+)\.(.*)", rest)
    tail = re.sub(r"^(attention|crossattention)\.attention\.", r"\1.self.", layer.group(2))
    return f"Qformer{suffix}.bert.encoder.layer.{layer.group(1)}.{tail}"


def generate(preset: str, blip2_dir: Path, lavis_path: Path) -> None:
    """Random weights in the real formats: a float32 BLIP-2 directory (shards) and a LAVIS .pth."""
    import torch
    from safetensors.torch import save_file
    from transformers import Blip2Config, Blip2ForConditionalGeneration

    from sevila.config import SeViLAConfig
    from sevila.convert import convert_lavis_state_dict
    from sevila.model import SeViLA
    from tests.support.tiny import tiny_tokenizer

    config = SeViLAConfig.preset(preset)
    generator = torch.Generator().manual_seed(0)
    if not (blip2_dir / "model.safetensors.index.json").is_file():
        tmp = blip2_dir.with_name(blip2_dir.name + ".partial")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        blip2_config = Blip2Config(
            vision_config=config.to_hf_vision_config().to_dict(),
            qformer_config=config.to_hf_qformer_config().to_dict(),
            text_config=config.to_hf_t5_config().to_dict(),
            num_query_tokens=config.qformer.num_query_tokens,
        )
        with torch.device("meta"):
            shapes = {
                k: tuple(v.shape)
                for k, v in Blip2ForConditionalGeneration(blip2_config).state_dict().items()
                if not k.endswith(("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"))
            }
        shapes["language_model.lm_head.weight"] = shapes["language_model.shared.weight"]  # Flan-T5: untied head
        groups: list[list[str]] = [[]]
        size = 0
        for key in sorted(shapes):
            nbytes = 4 * _numel(shapes[key])
            if groups[-1] and size + nbytes > GENERATED_SHARD_BYTES:
                groups.append([])
                size = 0
            groups[-1].append(key)
            size += nbytes
        weight_map, total = {}, 0
        for i, keys in enumerate(groups):
            name = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
            part = {k: torch.randn(shapes[k], generator=generator) * 0.02 for k in keys}
            save_file(part, tmp / name, metadata={"format": "pt"})
            total += sum(v.numel() * 4 for v in part.values())
            weight_map.update({k: name for k in keys})
            del part
            print(f"  wrote {name} ({len(keys)} tensors)", file=sys.stderr, flush=True)
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=2))
        blip2_config.save_pretrained(tmp)
        tiny_tokenizer().save_pretrained(str(tmp))  # any T5-style tokenizer does; the real one is not needed
        shutil.rmtree(blip2_dir, ignore_errors=True)
        tmp.rename(blip2_dir)
    if not lavis_path.is_file():
        with torch.device("meta"):
            model = SeViLA(config)
        state = {}
        for key, value in model.state_dict().items():
            if key.startswith(("answerer.", "localizer.")):
                state[_lavis_key(key)] = torch.randn(value.shape, generator=generator) * 0.02
        for suffix in ("", "_loc"):
            state[f"Qformer{suffix}.bert.embeddings.position_ids"] = torch.arange(512)[None]
        converted = convert_lavis_state_dict(state, config.vision.num_hidden_layers)
        assert not converted.unexpected and len(converted.tensors) == len(state) - 2, "LAVIS names out of date"
        tmp = lavis_path.with_name(lavis_path.name + ".partial")
        torch.save({"model": state}, tmp)
        tmp.rename(lavis_path)


def _numel(shape) -> int:
    count = 1
    for n in shape:
        count *= n
    return count


def child(args: argparse.Namespace) -> None:
    """One measured step; prints one JSON line with what the parent shows besides the peak."""
    t0 = time.perf_counter()
    import torch  # noqa: F401  (every step pays for the imports: the "imports" row)

    from sevila import cli  # noqa: F401
    from sevila.model import SeViLA  # noqa: F401
    from sevila.model.precision import Precision
    from sevila.model.weights import from_pretrained

    record: dict = {}
    if args.child == "convert":
        code = cli.main(["convert", str(args.lavis), str(args.out), "--base", str(args.blip2)])
        if code:
            raise SystemExit(code)
    elif args.child in ("bf16", "fp32"):
        half = torch.bfloat16 if args.child == "bf16" else torch.float32
        precision = Precision(vision=half, qformer=torch.float32, language_model=half)
        model = from_pretrained(args.out, precision=precision)
        storages = {}
        for tensor in list(model.parameters()) + list(model.buffers()):
            storage = tensor.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()
        record["weights"] = sum(storages.values())
        record["dtypes"] = sorted({str(p.dtype).removeprefix("torch.") for p in model.parameters()})
    record["seconds"] = time.perf_counter() - t0
    print(json.dumps(record))


# ---------------------------------------------------------------------------------------------- parent
def run_child(argv: list[str]) -> tuple[int, dict, float, float]:
    """Run this module as a child (from the repository root, with absolute paths in ``argv``); (exit status, its
    JSON record, peak RSS in bytes, wall seconds)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_memory", *argv], stdout=subprocess.PIPE, text=True, cwd=ROOT
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    wall = time.perf_counter() - start
    lines = [line for line in out.splitlines() if line.startswith("{")]
    record = json.loads(lines[-1]) if lines else {}
    return proc.returncode, record, usage.ru_maxrss * 1024, wall  # ru_maxrss is in KiB on Linux


def available_memory() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 62


def directory_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="paper", choices=("paper", "mid", "tiny"))
    parser.add_argument(
        "--dir",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "sevila-bench-memory",
        help="where inputs are generated (and reused) and the conversion is written",
    )
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--keep-output", action="store_true", help="keep the converted model")
    parser.add_argument("--force", action="store_true", help="run steps even when memory looks insufficient")
    parser.add_argument("--child", choices=("generate", *STEPS), help=argparse.SUPPRESS)
    for name in ("blip2", "lavis", "out"):
        parser.add_argument(f"--{name}", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child == "generate":
        generate(args.preset, args.blip2, args.lavis)
        return
    if args.child:
        child(args)
        return

    work = (args.dir / args.preset).resolve()  # absolute: the children run from the repository root
    blip2, lavis, out = work / "blip2", work / "sevila_pretrained.pth", work / "converted"
    paths = ["--blip2", str(blip2), "--lavis", str(lavis), "--out", str(out), "--preset", args.preset]
    steps = [s.strip() for s in args.steps.split(",") if s.strip()]
    unknown = set(steps) - set(STEPS)
    if unknown:
        parser.error(f"unknown steps {sorted(unknown)}; choose from {','.join(STEPS)}")
    if not (blip2 / "model.safetensors.index.json").is_file() or not lavis.is_file():
        work.mkdir(parents=True, exist_ok=True)
        print(f"generating inputs in {work} (once; reused by later runs) ...", file=sys.stderr, flush=True)
        code, _, peak, wall = run_child(["--child", "generate", *paths])
        if code:
            raise SystemExit(f"generating inputs failed (exit status {code})")
        print(f"  done in {wall:.0f} s, peak RSS {peak / 1e9:.1f} GB", file=sys.stderr)
    if ("bf16" in steps or "fp32" in steps) and "convert" not in steps and not out.is_dir():
        steps.insert(0, "convert")
    print(
        f"preset {args.preset}: BLIP-2 directory {directory_size(blip2) / 1e9:.2f} GB (float32 safetensors), "
        f"LAVIS checkpoint {lavis.stat().st_size / 1e9:.2f} GB, in {work}"
    )

    rows = []
    for step in steps:
        if step in ("bf16", "fp32") and out.is_dir():
            need = directory_size(out) * (0.5 if step == "bf16" else 1.0) + 2e9
            if need > available_memory() and not args.force:
                rows.append(
                    (step, None, f"skipped: needs ~{need / 1e9:.1f} GB, {available_memory() / 1e9:.1f} GB available")
                )
                continue
        code, record, peak, wall = run_child(["--child", step, *paths])
        if code:
            rows.append((step, None, f"failed with exit status {code}"))
            continue
        rows.append((step, (peak, record.get("weights"), wall, record), ""))
        if step == "convert":
            files = sorted(p.name for p in out.iterdir() if p.name.startswith("model"))
            print(f"converted: {directory_size(out) / 1e9:.2f} GB in {len(files)} files ({files[0]} .. {files[-1]})")

    labels = {
        "imports": "imports only (torch, transformers, sevila)",
        "convert": "sevila convert --base",
        "bf16": "load bf16 (ViT+T5 bf16, Q-Formers fp32)",
        "fp32": "load fp32",
    }
    print(f"\n{'step':44s} {'peak RSS':>10s} {'peak RSS':>10s} {'weights':>9s} {'peak-weights':>13s} {'wall':>7s}")
    print(f"{'':44s} {'(GB)':>10s} {'(GiB)':>10s} {'(GB)':>9s} {'(GB)':>13s} {'(s)':>7s}")
    for step, measured, note in rows:
        if measured is None:
            print(f"{labels[step]:44s} {note}")
            continue
        peak, weights, wall, _ = measured
        w = f"{weights / 1e9:9.2f}" if weights else f"{'':9s}"
        extra = f"{(peak - weights) / 1e9:13.2f}" if weights else f"{'':13s}"
        print(f"{labels[step]:44s} {peak / 1e9:10.2f} {peak / 2**30:10.2f} {w} {extra} {wall:7.1f}")
    if out.is_dir() and not args.keep_output:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
