"""Inference speed: our one/two decoder steps vs. the reference's 30-token `generate`, and the feature cache.

Measured in one run, on the same weights:
1. per-question time of chained inference (32 frames -> 4 keyframes -> answer) computed our way vs. with
   `T5ForConditionalGeneration.generate(max_new_tokens=30, output_scores=True)` reading scores[0] / scores[1]
   as the original does — outputs asserted equal — for the `tiny` and `mid` configs (random weights);
2. the speedup of the feature cache on 9 questions about each video (decode + encode once, then reuse);
3. peak memory (resident set size; CUDA peak allocation when run on a GPU).

Usage: python -m benchmarks.bench_inference [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch

from sevila import prompts
from sevila.config import SeViLAConfig
from sevila.features import FeatureCache
from sevila.inference import VideoQA
from sevila.model import SeViLA, select_keyframes
from sevila_toy.pattern_videos import write_video
from tests.support.tiny import OPTIONS, QUESTION, tiny_tokenizer

GENERATE = dict(
    num_beams=1, do_sample=False, max_new_tokens=30, min_length=1, output_scores=True, return_dict_in_generate=True
)


def build(name: str, device: str) -> SeViLA:
    torch.manual_seed(0)
    config = SeViLAConfig.preset(name)
    config.num_frames, config.num_keyframes = 32, 4
    model = SeViLA(config, tokenizer=tiny_tokenizer())
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return model.to(device).eval()


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
        if torch.cuda.is_available():
            torch.cuda.synchronize()
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
    torch.testing.assert_close(ours.option_scores, gen_scores.float(), atol=1e-4, rtol=1e-4)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(
        f"{name:5s} ({params:6.1f} M params)  per question, question-dependent part: "
        f"ours {ours_t * 1e3:8.1f} ms   generate {gen_t * 1e3:8.1f} ms   speedup {gen_t / ours_t:5.1f}x   (outputs equal)"
    )


def bench_cache(name: str, device: str, workdir: Path) -> None:
    model = build(name, device)
    videos = [write_video(workdir / f"v{i}.mp4", num_frames=48, width=160, height=120, fps=12) for i in range(2)]
    questions = [(f"{QUESTION} {j}", OPTIONS[: 2 + j % 4]) for j in range(9)]

    def workload(qa: VideoQA) -> float:
        start = time.perf_counter()
        for video in videos:
            for question, options in questions:
                qa.predict(video, question, options)
        return time.perf_counter() - start

    without = workload(VideoQA(model, cache=None))
    cold_cache = FeatureCache(workdir / f"cache-{name}")
    with_cache = workload(VideoQA(model, cache=cold_cache))
    warm = workload(VideoQA(model, cache=FeatureCache(workdir / f"cache-{name}")))  # as a later run would
    n = len(videos) * len(questions)
    print(
        f"{name:5s} 9 questions x {len(videos)} videos, per question: no cache {without / n * 1e3:7.1f} ms   "
        f"cache (first run) {with_cache / n * 1e3:7.1f} ms ({without / with_cache:4.1f}x)   "
        f"cache (later run) {warm / n * 1e3:7.1f} ms ({without / warm:4.1f}x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    print(f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for name in ("tiny", "mid"):
        bench_scoring(name, args.device, args.repeats)
    with tempfile.TemporaryDirectory() as workdir:
        for name in ("tiny", "mid"):
            bench_cache(name, args.device, Path(workdir))
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    if torch.cuda.is_available():
        print(f"peak CUDA allocation {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
