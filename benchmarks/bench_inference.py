"""Inference speed, measured in one run on the same weights: ours vs `generate`, today's path vs the fast one,
float32 vs bf16, and how much of the machine's matmul rate the model reaches.

1. **Scoring vs `generate`** (`tiny` and `mid`, float32): the question-dependent part of chained inference
   (32 frames -> 4 keyframes -> answer) our way vs the reference's greedy 30-token `generate` reading
   scores[0] / scores[1] — outputs asserted equal.
2. **Workload** (`--model`, default `mid`; 2 videos x 9 questions, 32 -> 4 frames), per question, in three
   kinds: *cold* (empty feature cache: decode, encode, store, answer), *warm* (features read from the cache)
   and *no cache* (every question decodes and encodes its video). Variants:
   * ``base``: today's path before the speed work — transformers' T5 encoder and decoder for the one or two
     decoder steps (`sevila.model.scoring.use_fast_steps(False)`), videos decoded on the main thread;
   * ``fast``: the default path (fast decoder steps, the encoder with its mask built once; videos decoded
     in a background thread while the model works, `VideoQA.predict_videos`), float32;
   * ``bf16``: the fast path with ``--precision bf16`` (ViT and T5 in bf16).
   ``fast`` is asserted equal to ``base`` (keyframes, answers, first tokens exactly; frame and option scores
   within 1e-4 abs + 1e-4 rel); ``bf16``'s drift from ``fast`` is reported. Repeats are interleaved and the
   medians reported.
3. **Stage split** of each kind: decode (the part the model waited for; ``decode(bg)`` is the background
   thread's own time), ViT, Q-Formers, localizer T5, answerer T5, other (cache reads and writes, prompts,
   Python).
4. **Utilisation**: FLOPs per question counted with `torch.utils.flop_counter.FlopCounterMode` on the
   fast path, achieved FLOP/s, and the machine's matmul rate measured now (2048^3 GEMM, best of 5) at
   float32 and bf16.

The closing ``SUMMARY`` lines hold the figures. Usage:
``python -m benchmarks.bench_inference [--repeats 3] [--model mid] [--device cpu|cuda] [--skip-generate]``
"""

from __future__ import annotations

import argparse
import copy
import resource
import statistics
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from contextlib import ExitStack, contextmanager
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import sevila.features as features_module
from sevila import prompts
from sevila.config import SeViLAConfig
from sevila.features import FeatureCache, VideoPrefetcher
from sevila.inference import VideoQA
from sevila.model import Precision, SeViLA, scoring, select_keyframes
from sevila.video.encode import write_mp4
from tests.support.tiny import OPTIONS, QUESTION, tiny_tokenizer

GENERATE = dict(
    num_beams=1, do_sample=False, max_new_tokens=30, min_length=1, output_scores=True, return_dict_in_generate=True
)
STAGES = ("decode", "ViT", "Q-Formers", "localizer T5", "answerer T5", "other")
ATOL = RTOL = 1e-4


def build(name: str, device: str) -> SeViLA:
    torch.manual_seed(0)
    config = SeViLAConfig.preset(name)
    config.num_frames, config.num_keyframes = 32, 4
    model = SeViLA(config, tokenizer=tiny_tokenizer())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    model.requires_grad_(False)  # inference only (and FlopCounterMode's module tracker needs it)
    return model.to(device).eval()


def moving_video(path: Path, seed: int, frames: int = 1200, width: int = 640, height: int = 360) -> Path:
    """40 s at 30 fps of drifting colour gradients with noise, H.264 with x264's default keyframe interval
    (250 frames), as camera videos have: sampling 32 frames decodes most of the video, as it does for NExT-QA's."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = rng.integers(0, 24, (height, width, 3), dtype=np.uint8)

    def frame(t: int) -> np.ndarray:
        phase = 2 * np.pi * t / frames
        channels = [np.sin(x / (37 + 11 * c) + phase * (c + 1)) + np.cos(y / (23 + 7 * c) - phase) for c in range(3)]
        rgb = (np.stack(channels, axis=-1) * 50 + 128).clip(0, 230).astype(np.uint8)
        return rgb + np.roll(noise, 3 * t, axis=1)

    return write_mp4(path, (frame(t) for t in range(frames)), fps=30, gop=250, codec_options={"preset": "veryfast"})


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


# ---------------------------------------------------------------------------------------------- 1. vs generate
def generate_based(model: SeViLA, features, qa: list[str], loc: list[str], num_options: int, k: int):
    """The reference's way: greedy 30-token generate, read scores[0] (localizer) and scores[1] (answerer)."""
    t5, text = model.language_model, model.text
    embeds, mask = model.frame_level_inputs(features.localizer, loc)
    out = t5.generate(inputs_embeds=embeds, attention_mask=mask, **GENERATE)
    yes = out.scores[0][:, text.yes_id].view(features.localizer.shape[:2])
    keyframes = select_keyframes(yes, k)
    tokens = features.answerer[torch.arange(len(qa))[:, None], keyframes]
    embeds, mask = model.video_level_inputs(tokens, qa)
    out = t5.generate(inputs_embeds=embeds, attention_mask=mask, **GENERATE)
    step = 1 if len(out.scores) > 1 else 0
    return out.scores[step][:, text.option_token_ids(num_options)], keyframes


def timed(fn, repeats: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def bench_scoring(name: str, device: str, repeats: int) -> None:
    model = build(name, device)
    size = model.config.vision.image_size
    frames = torch.randn(1, 32, 3, size, size, generator=torch.Generator().manual_seed(1)).to(device)
    qa, loc = [prompts.qa_prompt(QUESTION, OPTIONS)], [prompts.loc_prompt(QUESTION, OPTIONS)]
    with torch.no_grad():
        features = model.encode_frames(frames)
        ours_t, ours = timed(lambda: model.predict(features, qa, 5, loc, num_keyframes=4), repeats)
        gen_t, (gen_scores, gen_keyframes) = timed(lambda: generate_based(model, features, qa, loc, 5, 4), repeats)
    assert ours.keyframes.tolist() == gen_keyframes.tolist(), "keyframes differ"
    torch.testing.assert_close(ours.option_scores, gen_scores.float(), atol=ATOL, rtol=RTOL)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"{name:5s} ({params:6.1f} M params)  per question, question-dependent part: "
        f"ours {ours_t * 1e3:8.1f} ms   generate {gen_t * 1e3:8.1f} ms   speedup {gen_t / ours_t:5.1f}x   (outputs equal)"
    )


# ---------------------------------------------------------------------------------------------- 2-3. workload
class StageClock:
    """Wall time per stage, by wrapping the model's stage methods (and the decoder) for one run."""

    def __init__(self):
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed_call(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                sync()
                self.seconds[stage] += time.perf_counter() - start

        return timed_call

    @contextmanager
    def watching(self, model: SeViLA):
        originals = {}
        with ExitStack() as stack:
            for owner, attr, stage in (
                (model, "encode_vision", "ViT"),
                (model.answerer, "forward", "Q-Formers"),
                (model.localizer, "forward", "Q-Formers"),
                (model, "frame_scores", "localizer T5"),
                (model, "answer", "answerer T5"),
            ):
                setattr(owner, attr, self.wrap(stage, getattr(owner, attr)))
                stack.callback(delattr, owner, attr)  # the instance attribute shadowed the method
            for module, attr, stage in (
                (features_module, "load_video", "decode(bg)"),
                (VideoPrefetcher, "take", "decode wait"),
            ):
                originals[(module, attr)] = getattr(module, attr)
                setattr(module, attr, self.wrap(stage, originals[(module, attr)]))
                stack.callback(setattr, module, attr, originals[(module, attr)])
            yield self

    def split(self, total: float, background_decode: bool) -> dict[str, float]:
        """Seconds per `STAGES` entry: decode is what the main thread waited for (all of it without the
        background thread); other is the rest of the wall time."""
        parts = {
            "decode": self.seconds["decode wait"] if background_decode else self.seconds["decode(bg)"],
            "ViT": self.seconds["ViT"],
            "Q-Formers": self.seconds["Q-Formers"],
            "localizer T5": self.seconds["localizer T5"],
            "answerer T5": self.seconds["answerer T5"],
        }
        parts["other"] = total - sum(parts.values())
        parts["decode(bg)"] = self.seconds["decode(bg)"]
        return parts


class Workload:
    def __init__(self, videos: list[Path], questions: list[tuple[str, list[str]]]):
        self.videos, self.questions = videos, questions
        self.count = len(videos) * len(questions)

    def answers(self, qa: VideoQA, variant: str, kind: str) -> list:
        """Run the workload; the answers in video-major order."""
        if kind == "nocache":  # every question on its own: decode, encode, answer
            return [qa.predict(v, q, o) for v in self.videos for q, o in self.questions]
        if variant == "base":
            return [a for v in self.videos for a in qa.predict_many(v, self.questions)]
        return [a for answers in qa.predict_videos((v, self.questions) for v in self.videos) for a in answers]


def run_once(model, workload: Workload, variant: str, kind: str, cache_dir: Path | None):
    features_module._file_hashes.clear()  # a cold run hashes its videos again, as a new process would
    qa = VideoQA(model, cache=FeatureCache(cache_dir) if cache_dir else None)
    clock = StageClock()
    with clock.watching(model), scoring.use_fast_steps(variant != "base"), torch.no_grad():
        start = time.perf_counter()
        answers = workload.answers(qa, variant, kind)
        sync()
        total = time.perf_counter() - start
    return total, clock.split(total, background_decode=variant != "base" and kind != "nocache"), answers


def compare(reference: list, other: list, exact: bool) -> dict:
    """Differences of ``other``'s answers from ``reference``'s; with ``exact`` asserted within tolerance."""
    frame = max(max(abs(a - b) for a, b in zip(x.frame_scores, y.frame_scores)) for x, y in zip(reference, other))
    frame_range = max(
        max(abs(a - b) for a, b in zip(x.frame_scores, y.frame_scores)) / (max(x.frame_scores) - min(x.frame_scores))
        for x, y in zip(reference, other)
    )
    option = max(max(abs(a - b) for a, b in zip(x.option_scores, y.option_scores)) for x, y in zip(reference, other))
    same_keyframes = sum(x.keyframes == y.keyframes for x, y in zip(reference, other))
    same_answers = sum(x.index == y.index for x, y in zip(reference, other))
    if exact:
        assert same_keyframes == same_answers == len(reference), "keyframes or answers differ"
        for x, y in zip(reference, other):
            for a, b in ((x.frame_scores, y.frame_scores), (x.option_scores, y.option_scores)):
                torch.testing.assert_close(torch.tensor(b), torch.tensor(a), atol=ATOL, rtol=RTOL)
    return dict(
        frame=frame,
        frame_range=frame_range,
        option=option,
        keyframes=same_keyframes,
        answers=same_answers,
        n=len(reference),
    )


def count_flops(model, workload: Workload, kind: str, cache_dir: Path | None) -> float:
    qa = VideoQA(model, cache=FeatureCache(cache_dir) if cache_dir else None)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        workload.answers(qa, "fast", kind)
    return counter.get_total_flops()


def matmul_rate(dtype: torch.dtype, device: str, size: int = 2048, repeats: int = 5) -> float:
    """FLOP/s of one size^3 matrix product at ``dtype``, best of ``repeats``."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = float("inf")
    for _ in range(repeats + 1):  # the first warms up
        start = time.perf_counter()
        torch.mm(a, b)
        sync()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def bench_workload(name: str, device: str, repeats: int, workdir: Path) -> list[str]:
    fp32 = build(name, device)
    bf16 = copy.deepcopy(fp32).apply_precision(Precision.named("bf16", device))
    models = {"base": fp32, "fast": fp32, "bf16": bf16}
    videos = [moving_video(workdir / f"v{i}.mp4", seed=i) for i in range(2)]
    workload = Workload(videos, [(f"{QUESTION} {j}", OPTIONS[: 2 + j % 4]) for j in range(9)])
    n = workload.count
    print(
        f"\n{name}: {len(videos)} videos (640x360, 30 fps, 40 s) x {len(workload.questions)} questions, 32 -> 4 frames"
    )

    # Warm-up: the whole workload once per model and path, so no variant pays first-call costs (new shapes);
    # the fast runs fill the caches the warm runs read.
    warm_dirs = {"fp32": workdir / "cache-fp32", "bf16": workdir / "cache-bf16"}
    run_once(fp32, workload, "base", "cold", workdir / "warm-up")
    run_once(fp32, workload, "fast", "cold", warm_dirs["fp32"])
    run_once(bf16, workload, "bf16", "cold", warm_dirs["bf16"])

    times: dict[tuple[str, str], list[float]] = defaultdict(list)
    splits: dict[tuple[str, str], list[dict]] = defaultdict(list)
    answers: dict[tuple[str, str], list] = {}
    order = ["base", "fast", "bf16"]
    for repeat in range(repeats):
        rotation = order[repeat % 3 :] + order[: repeat % 3]  # interleaved, each first in turn
        for kind in ("cold", "warm"):
            for variant in rotation:
                if kind == "cold":
                    cache_dir = workdir / f"cold-{variant}-{repeat}"
                else:
                    cache_dir = warm_dirs["bf16" if variant == "bf16" else "fp32"]
                total, split, result = run_once(models[variant], workload, variant, kind, cache_dir)
                print(
                    f"  run {repeat + 1}/{repeats} {variant:5s} {kind:5s} {total / n * 1e3:8.1f} ms/question",
                    flush=True,
                )
                times[variant, kind].append(total / n)
                splits[variant, kind].append(split)
                answers[variant, kind] = result
    for variant in order:  # no cache: one run each (every question decodes and encodes)
        total, split, result = run_once(models[variant], workload, variant, "nocache", None)
        times[variant, "nocache"].append(total / n)
        splits[variant, "nocache"].append(split)
        answers[variant, "nocache"] = result

    # Equality: fast == base (float tolerance), bf16's drift from fast.
    checks = {kind: compare(answers["base", kind], answers["fast", kind], exact=True) for kind in ("cold", "warm")}
    drift = compare(answers["fast", "warm"], answers["bf16", "warm"], exact=False)

    def median(variant: str, kind: str) -> float:
        return statistics.median(times[variant, kind])

    def median_split(variant: str, kind: str) -> dict[str, float]:
        rows = splits[variant, kind]
        return {stage: statistics.median(row[stage] for row in rows) / n for stage in (*STAGES, "decode(bg)")}

    print(f"per question, median of {repeats} (no cache: 1 run), ms; stage split in ms per question")
    header = "".join(f"{s:>13s}" for s in (*STAGES, "decode(bg)"))
    print(f"{'variant':8s}{'kind':9s}{'total':>9s}{header}")
    for kind in ("cold", "warm", "nocache"):
        for variant in order:
            split = median_split(variant, kind)
            cells = "".join(f"{split[s] * 1e3:13.1f}" for s in (*STAGES, "decode(bg)"))
            print(f"{variant:8s}{kind:9s}{median(variant, kind) * 1e3:9.1f}{cells}")
    for kind, check in checks.items():
        print(
            f"fast vs base ({kind}): keyframes {check['keyframes']}/{check['n']}, answers {check['answers']}/{check['n']}, "
            f"max |d| frame scores {check['frame']:.1e}, option scores {check['option']:.1e} (asserted <= {ATOL:g} + {RTOL:g}|x|)"
        )

    # Utilisation (FLOPs counted on the fast path; matmul rates measured now).
    warm_flops = count_flops(fp32, workload, "warm", warm_dirs["fp32"]) / n
    cold_flops = count_flops(fp32, workload, "cold", workdir / "count-cold") / n
    video_flops = (cold_flops - warm_flops) * len(workload.questions)  # ViT + Q-Formers of one video
    nocache_flops = warm_flops + video_flops
    rates = {"fp32": matmul_rate(torch.float32, device), "bf16": matmul_rate(torch.bfloat16, device)}
    flops = {"cold": cold_flops, "warm": warm_flops, "nocache": nocache_flops}
    print(
        f"matmul rate here: fp32 {rates['fp32'] / 1e9:.0f} GFLOP/s, bf16 {rates['bf16'] / 1e9:.0f} GFLOP/s "
        f"({rates['bf16'] / rates['fp32']:.2f}x)"
    )
    for kind in ("cold", "warm", "nocache"):
        for variant, rate_key in (("fast", "fp32"), ("bf16", "bf16")):
            achieved = flops[kind] / median(variant, kind)
            print(
                f"{variant:5s} {kind:8s}: {flops[kind] / 1e9:6.1f} GFLOP/question, {achieved / 1e9:6.1f} GFLOP/s = "
                f"{achieved / rates[rate_key]:4.0%} of the {rate_key} matmul rate"
                + (f" ({achieved / rates['fp32']:4.0%} of fp32's)" if rate_key == "bf16" else "")
            )

    warm_base, warm_fast, warm_bf16 = median("base", "warm"), median("fast", "warm"), median("bf16", "warm")
    cold_split = median_split("fast", "cold")
    model_time = sum(cold_split[s] for s in ("ViT", "Q-Formers", "localizer T5", "answerer T5"))
    split_text = ", ".join(f"{s} {cold_split[s] / median('fast', 'cold'):.0%}" for s in STAGES)
    return [
        f"SUMMARY {name} warm per question: base fp32 {warm_base * 1e3:.0f} ms, fast fp32 {warm_fast * 1e3:.0f} ms "
        f"({warm_base / warm_fast:.2f}x, outputs equal), bf16 {warm_bf16 * 1e3:.0f} ms "
        f"({warm_base / warm_bf16:.2f}x over base fp32)",
        f"SUMMARY {name} cold per question: base {median('base', 'cold') * 1e3:.0f} ms, fast {median('fast', 'cold') * 1e3:.0f} ms "
        f"({median('base', 'cold') / median('fast', 'cold'):.2f}x), bf16 {median('bf16', 'cold') * 1e3:.0f} ms; "
        f"no cache: base {median('base', 'nocache') * 1e3:.0f}, fast {median('fast', 'nocache') * 1e3:.0f}, "
        f"bf16 {median('bf16', 'nocache') * 1e3:.0f} ms",
        f"SUMMARY {name} bf16 drift from fp32 (warm, {drift['n']} questions): frame scores max |d| {drift['frame']:.3f} "
        f"({drift['frame_range']:.1%} of the video's range), "
        f"option scores max |d| {drift['option']:.3f}, keyframes same {drift['keyframes']}/{drift['n']}, "
        f"answers same {drift['answers']}/{drift['n']}",
        f"SUMMARY {name} utilisation (warm): fp32 {warm_flops / warm_fast / rates['fp32']:.0%} of the fp32 matmul rate "
        f"({rates['fp32'] / 1e9:.0f} GFLOP/s), bf16 {warm_flops / warm_bf16 / rates['bf16']:.0%} of the bf16 rate "
        f"({rates['bf16'] / 1e9:.0f} GFLOP/s; {warm_flops / warm_bf16 / rates['fp32']:.0%} of fp32's); "
        f"{warm_flops / 1e9:.1f} GFLOP per question warm, {cold_flops / 1e9:.1f} cold",
        f"SUMMARY {name} cold split (fast fp32): {split_text}; decode the model waited for = "
        f"{cold_split['decode'] / model_time:.0%} of model time (decoding itself {cold_split['decode(bg)'] * 1e3:.0f} ms "
        f"per question in the background thread)",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="mid", help="preset of the workload (tiny, mid, paper)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-generate", action="store_true", help="leave out part 1 (ours vs generate)")
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    if not args.skip_generate:
        for name in ("tiny", "mid"):
            bench_scoring(name, args.device, args.repeats)
    with tempfile.TemporaryDirectory() as workdir:
        summary = bench_workload(args.model, args.device, args.repeats, Path(workdir))
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if torch.cuda.is_available():
        print(f"peak CUDA allocation {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
