"""The training loop shared by the three stages: `train(config)`.

Processes. Hugging Face Accelerate sets up whatever launched us — ``python -m sevila.cli train`` (one
process), ``accelerate launch`` or ``torchrun`` (several processes, one or several nodes; gloo on CPU,
NCCL on GPU) — and wraps the `StageModel` in DDP. The run directory must be on a filesystem every node
sees (the main process writes checkpoints, every process its own generator states).

Precision. The frozen parts are stored and run as `Precision.for_device` says: on CUDA the original's
``reference`` mode (ViT with fp16 Conv/Linear weights under fp16 autocast, LayerNorms and residual fp32;
T5 with bf16 weights under bf16 autocast — never fp16, whose range T5's activations overflow). The trained
branch stays fp32. ``mixed_precision: bf16`` (the default on CUDA) additionally runs the forward under
``torch.autocast(bfloat16)``: the trained Q-Former's matmuls then run in bf16 while its weights, gradients
and AdamW state stay fp32 (checked); LayerNorms, softmax and the cross-entropy run in fp32 as autocast
decides. This replaces the original's fp16 autocast + GradScaler (bf16 has fp32's range, so there is no
loss scaling and no GradScaler state). Validation runs each stage in the model's precision, exactly like
inference with `SeViLA.from_pretrained`.

Steps. An optimizer step takes ``grad_accum_steps`` micro-batches per process (gradients are synchronised
on the last one only). An epoch is a whole number of optimizer steps; see `sevila.train.data` for the data
order, which depends only on the seed, and `sevila.train.optim` for the schedule. Global generators
(dropout) are seeded with ``seed + rank`` as in the original. After each epoch the model is validated and,
if better than every earlier epoch by the ``select_by`` metric, saved as ``best/`` (the first epoch always is:
the original's initial best of 0 would never save a run whose accuracy stays 0).

Start. The model is loaded from ``model`` (or ``init``); with ``localizer_init: blip2 <id|dir>`` its localizer
is then replaced by that BLIP-2's Q-Former (`sevila.train.start`), as the original's self-refinement does.

Rounds (refine-localizer). ``rounds: N`` runs the whole stage N times in ``round-1/`` … ``round-N/``. Round
r > 1 starts from round r−1's ``best/`` (its refined localizer; the answerer, ViT and T5 are the starting
model's, since only the localizer trains; ``localizer_init`` applies to round 1 only). What repeats in every
round: a fresh AdamW state, the warmup + cosine schedule from step 0, ``epochs`` epochs over the same data
order, pseudo-labels computed on the fly by the same frozen answerer, and validation with best-of-round
selection. ``best/`` of the run is the best round's best (hard links, no copy). To let a re-fine-tuned
answerer make the next round's pseudo-labels, chain runs instead: refine-localizer → finetune-answerer
``model=<its best>`` → ….
"""

from __future__ import annotations

import json
import logging
import math
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from sevila.convert import from_blip2
from sevila.data import VideoRecordDataset, read_records
from sevila.data.records import Record
from sevila.hub import hub_revision, provenance, resolve_name
from sevila.loading import load_model
from sevila.model import Precision, SeViLA
from sevila.model.sevila import BRANCHES
from sevila.model.vision_memo import memoized_vision
from sevila.model.weights import CheckpointError
from sevila.train import checkpointing as ckpt
from sevila.train.config import ConfigError, TrainConfig
from sevila.train.data import EpochBatches, SeededItems, check_records, loader
from sevila.train.logs import RunLog
from sevila.train.optim import WarmupCosineSchedule, build_optimizer
from sevila.train.recipes import Recipe, StageModel, recipe_for
from sevila.train.start import copy_blip2_localizer
from sevila.utils.io import atomic_write_text

logger = logging.getLogger(__name__)

SUMMARY_NAME = "summary.json"
CONFIG_NAME = "config.yaml"  # the resolved run config (file plus overrides), written when a run starts
PROVENANCE_NAME = "provenance.json"  # what ran it: sevila version, dates, the starting model


class TrainingError(ValueError):
    """A run that cannot produce a meaningful model (e.g. every training batch was skipped): one line."""


def show_progress_bars() -> bool:
    """Progress bars only on a terminal: in a log file their carriage-return frames are noise (the
    metrics.jsonl lines and the INFO log say the same)."""
    return sys.stderr.isatty()


@dataclass
class StageResult:
    """The outcome of one run of a stage (one round)."""

    run_dir: Path
    metric: str
    best_metric: float | None
    best_epoch: int | None
    global_step: int
    stopped: bool  # ended early by stop_after_steps

    @property
    def best_dir(self) -> Path | None:
        return None if self.best_epoch is None else self.run_dir / ckpt.BEST_DIR


@dataclass
class TrainResult:
    run_dir: Path
    stage: str
    metric: str
    best_metric: float | None
    best_dir: Path | None
    stopped: bool
    rounds: list[StageResult] = field(default_factory=list)


# ---------------------------------------------------------------------------------------------- setup
def make_accelerator(config: TrainConfig):
    """Accelerate's view of the launch (processes, device), with DDP and autocast settings."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs

    cuda = torch.cuda.is_available()
    precision = config.mixed_precision
    if precision == "auto":
        precision = "bf16" if cuda and torch.cuda.is_bf16_supported() else "no"
    ddp = DistributedDataParallelKwargs(find_unused_parameters=config.find_unused_parameters, broadcast_buffers=False)
    return Accelerator(mixed_precision=precision, cpu=not cuda, kwargs_handlers=[ddp])


def load_start_model(source: str, device: torch.device) -> SeViLA:
    """``source`` is a model `load_model` takes (a directory or hub id of ours or of a BLIP-2, or a short name)
    or ``"blip2 <id|dir>"``."""
    precision = Precision.for_device(device)
    kind, _, name = source.partition(" ")
    if kind == "blip2" and name.strip():
        return from_blip2(name.strip(), device=device, precision=precision)
    return load_model(source, device=device, precision=precision)


def check_trainable(model: SeViLA, branch: str) -> None:
    """Only ``branch`` trains, all of it, in float32 (AdamW on bf16 weights would lose small updates)."""
    for name, param in model.named_parameters():
        inside = name.startswith(branch + ".")
        if param.requires_grad != inside:
            raise RuntimeError(f"{name}: requires_grad={param.requires_grad}, but only the {branch} trains")
        if inside and param.dtype != torch.float32:
            raise RuntimeError(f"{name} is {param.dtype}; the trained branch must be float32")


def check_frozen_gradients(model: SeViLA, branch: str) -> None:
    """After a backward pass: no parameter outside the trained branch holds a gradient."""
    leaked = [n for n, p in model.named_parameters() if p.grad is not None and not n.startswith(branch + ".")]
    if leaked:
        raise RuntimeError(f"frozen parameters received gradients: {leaked[:5]}")


def set_train_mode(model: SeViLA, branch: str, frozen_dropout: bool) -> None:
    """Training mode; with ``frozen_dropout=False`` the frozen T5 and branch run without dropout (the
    original keeps it on: the whole model is in train mode apart from the ViT)."""
    model.train()
    if not frozen_dropout:
        model.language_model.eval()
        for other in BRANCHES:
            if other != branch:
                getattr(model, other).eval()


def read_split(path: str, recipe: Recipe, split: str) -> list[Record]:
    records = read_records(path)
    check_records(records, recipe.record_type, split, path)
    return records


def _run_facts(config: TrainConfig, world_size: int) -> dict[str, Any]:
    return {
        "stage": config.stage,
        "world_size": world_size,
        "batch_size": config.batch_size,
        "grad_accum_steps": config.grad_accum_steps,
        "seed": config.seed,
        "uniform_frames": config.uniform_frames,
        "localizer_init": config.localizer_init,  # the frozen localizer of finetune-answerer comes from it
        "select_by": config.selection_metric,  # the best-so-far in the checkpoint is of this metric
    }


def _has_run(run_dir: Path) -> bool:
    names = (ckpt.CHECKPOINT_DIR, ckpt.BEST_DIR, SUMMARY_NAME, "round-1")
    return any((run_dir / n).exists() for n in names)


# ---------------------------------------------------------------------------------------------- one stage
class StageRun:
    """One run of a stage in one run directory: model, optimizer, data, logs, and the epoch loop."""

    def __init__(
        self,
        config: TrainConfig,
        accelerator,
        recipe: Recipe,
        source: str,
        run_dir: Path,
        train_records: list[Record],
        val_records: list[Record],
        resume_from: Path | None,
        localizer_from: str | None = None,
    ):
        from accelerate.utils import set_seed

        self.config, self.accelerator, self.recipe, self.run_dir = config, accelerator, recipe, run_dir
        self.source, self.localizer_from = source, localizer_from
        self.main = accelerator.is_main_process
        set_seed(config.seed + accelerator.process_index)  # every run (round) starts from the same state
        self.model = load_start_model(source, accelerator.device)
        if localizer_from is not None:  # the original's load_qformer_loc (sevila.train.start)
            try:
                copy_blip2_localizer(self.model, localizer_from)
            except (CheckpointError, FileNotFoundError) as err:
                raise ConfigError("localizer_init", str(err), config.source_file) from None
        self.model.set_trainable(recipe.branch)
        check_trainable(self.model, recipe.branch)
        self.optimizer = build_optimizer(self.model, config.optim)
        self.schedule = WarmupCosineSchedule.from_config(config.optim, config.epochs, config.grad_accum_steps)
        self.progress = ckpt.Progress(run=_run_facts(config, accelerator.num_processes))
        if resume_from is not None:
            self._resume(resume_from)
        self.stage = accelerator.prepare(StageModel(self.model, recipe))
        self.train_batches, self.train_loader = self._train_data(train_records)
        self.val_loader = self._val_data(val_records)
        resuming = resume_from is not None
        self.log = RunLog(
            run_dir,
            enabled=self.main,
            tensorboard=config.tensorboard,
            resume_lines=self.progress.metrics_lines if resuming else None,
            purge_step=self.progress.global_step + 1 if resuming else None,
        )
        self._window: list[float] = [0.0, 0.0, 0.0]  # loss sum, batches with a loss, skipped batches
        self._epoch_batches = [0.0, 0.0]  # this process's micro-batches of the epoch: trained, skipped
        self._checked_gradients = False
        self._epoch_steps = 0

    # ------------------------------------------------------------------ setup helpers
    def _resume(self, directory: Path) -> None:
        saved = ckpt.read_progress(directory)
        ckpt.check_same_run(saved.run, self.progress.run, directory)
        self.progress = ckpt.restore(directory, self.model, self.optimizer, self.accelerator.process_index)
        changed = self.schedule.load_state_dict(self.progress.schedule)
        if changed and self.main:
            logger.warning("the schedule's %s changed since the checkpoint; the new values apply", ", ".join(changed))
        if self.main:
            logger.info(
                "resuming from %s at epoch %d, step %d of the epoch (global step %d)",
                directory,
                self.progress.epoch,
                self.progress.step_in_epoch,
                self.progress.global_step,
            )

    def _dataset(self, records: list[Record], root: str, frames: int, train: bool) -> SeededItems:
        data = self.config.data
        return SeededItems(
            VideoRecordDataset(
                records,
                root,
                frames,
                train=train,
                augment=data.augment,
                image_size=data.image_size,
                video_path=data.video_path,
                backend=data.backend,
                on_error="skip" if data.skip_unreadable else "raise",
            )
        )

    def _train_data(self, records: list[Record]):
        c, a = self.config, self.accelerator
        batches = EpochBatches(
            len(records),
            c.batch_size,
            seed=c.seed,
            shuffle=True,
            rank=a.process_index,
            world_size=a.num_processes,
            accumulation=c.grad_accum_steps,
        )
        if len(batches) < c.grad_accum_steps:
            global_batch = c.batch_size * a.num_processes * c.grad_accum_steps
            raise ValueError(
                f"{c.data.train}: {len(records)} training records make no full global batch of {global_batch} "
                f"(batch_size {c.batch_size} x {a.num_processes} processes x grad_accum_steps {c.grad_accum_steps})"
            )
        items = self._dataset(records, c.data.video_root, c.data.train_frames, train=True)
        self._train_items = items
        return batches, loader(items, batches, c.data.num_workers, pin_memory=a.device.type == "cuda")

    def _val_data(self, records: list[Record]):
        c, a = self.config, self.accelerator
        batches = EpochBatches(
            len(records),
            c.eval_batch_size,
            seed=c.seed,
            shuffle=False,
            rank=a.process_index,
            world_size=a.num_processes,
            drop_last=False,
        )
        items = self._dataset(records, c.val_video_root, c.data.eval_frames, train=False)
        return loader(items, batches, c.data.num_workers, pin_memory=a.device.type == "cuda")

    # ------------------------------------------------------------------ the loop
    def run(self) -> StageResult:
        c = self.config
        memo = memoized_vision(self.model, c.vision_cache_bytes) if c.cache_vision_states else nullcontext()
        try:
            with memo as cached:
                for epoch in range(self.progress.epoch, c.epochs):
                    if self._train_epoch(epoch):
                        return self._result(stopped=True)
                    self._end_epoch(epoch)
                if cached is not None and self.main:
                    logger.info(
                        "ViT states: %d frames reused, %d encoded (%.0f MiB kept)",
                        cached.hits,
                        cached.misses,
                        cached.bytes / 2**20,
                    )
            result = self._result(stopped=False)
            if self.main:
                text = json.dumps({**asdict(result), "run_dir": str(result.run_dir)}, indent=2) + "\n"
                atomic_write_text(self.run_dir / SUMMARY_NAME, text)
            return result
        finally:
            self.log.close()

    def _train_epoch(self, epoch: int) -> bool:
        """One epoch from the saved position; True if stop_after_steps ended the run."""
        c, accum = self.config, self.config.grad_accum_steps
        self.train_batches.set_epoch(epoch, self.progress.step_in_epoch * accum)
        self._epoch_steps = self.progress.step_in_epoch + len(self.train_batches) // accum
        set_train_mode(self.model, self.recipe.branch, c.frozen_dropout)
        bar = tqdm(
            total=self._epoch_steps,
            initial=self.progress.step_in_epoch,
            desc=f"{self.recipe.stage} epoch {epoch + 1}/{c.epochs}",
            disable=not self.main or not show_progress_bars(),
            unit="step",
        )
        self._epoch_batches = [0.0, 0.0]
        try:
            for micro, batch in enumerate(self.train_loader):
                last = (micro + 1) % accum == 0
                self._micro_step(batch, epoch, sync=last)
                if not last:
                    continue
                self._optimizer_step(epoch)
                bar.update(1)
                if self._periodic(epoch, bar):
                    return True
        finally:
            bar.close()
        return False

    def _micro_step(self, batch, epoch: int, sync: bool) -> None:
        if batch is None:
            self._window[2] += 1
            self._epoch_batches[1] += 1
            logger.warning("epoch %d: a batch whose every video failed to load was skipped", epoch)
        else:
            batch["frames"] = batch["frames"].to(self.accelerator.device, non_blocking=True)
        with nullcontext() if sync else self.accelerator.no_sync(self.stage):
            loss = self.stage(batch)
            scale = self.config.grad_accum_steps if self.config.optim.scale_loss_by_accumulation else 1
            self.accelerator.backward(loss / scale)
        if batch is not None:
            self._window[0] += float(loss.detach())
            self._window[1] += 1
            self._epoch_batches[0] += 1

    def _optimizer_step(self, epoch: int) -> None:
        if not self._checked_gradients:
            check_frozen_gradients(self.model, self.recipe.branch)
            self._checked_gradients = True
        self.schedule.apply(self.optimizer, epoch, self.progress.step_in_epoch)
        if self.config.optim.max_grad_norm:
            trainable = [p for p in self.model.parameters() if p.requires_grad]
            self.accelerator.clip_grad_norm_(trainable, self.config.optim.max_grad_norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.progress.step_in_epoch += 1
        self.progress.global_step += 1

    def _periodic(self, epoch: int, bar) -> bool:
        """Logging, checkpoints and the simulated kill after an optimizer step; True to stop."""
        c, step = self.config, self.progress.global_step
        if step % c.log_every_steps == 0 or self.progress.step_in_epoch == self._epoch_steps:
            loss = self._take_loss()
            self.log.log(
                {
                    "step": step,
                    "epoch": epoch,
                    "loss": loss,
                    "lr": self.schedule.last_lr,
                    "skipped_batches": self.progress.skipped_batches,
                }
            )
            bar.set_postfix(loss=f"{loss:.4f}", lr=f"{self.schedule.last_lr:.2e}")
            if self.main and bar.disable:  # no bar (not a terminal): a plain log line instead
                logger.info(
                    "epoch %d step %d/%d (global %d): loss %.4f, lr %.2e",
                    epoch + 1,
                    self.progress.step_in_epoch,
                    self._epoch_steps,
                    step,
                    loss,
                    self.schedule.last_lr,
                )
        if c.checkpoint_every_steps and step % c.checkpoint_every_steps == 0:
            self._save_checkpoint()
        return c.stop_after_steps is not None and step >= c.stop_after_steps

    def _flush_window(self) -> None:
        """Add this process's counters to the run-wide ones in `progress` (summed over processes), so that a
        checkpoint carries them and a resumed run logs the same numbers as an uninterrupted one."""
        window = torch.tensor(self._window, dtype=torch.float64, device=self.accelerator.device)
        loss_sum, count, skipped = (float(v) for v in self.accelerator.reduce(window, "sum"))
        self.progress.pending_loss[0] += loss_sum
        self.progress.pending_loss[1] += count
        self.progress.skipped_batches += int(skipped)
        self._window = [0.0, 0.0, 0.0]

    def _take_loss(self) -> float:
        """Mean training loss over every process since the last log line."""
        self._flush_window()
        loss_sum, count = self.progress.pending_loss
        self.progress.pending_loss = [0.0, 0.0]
        return loss_sum / count if count else math.nan

    def _check_epoch_trained(self, epoch: int) -> None:
        """Every process's micro-batches of the epoch were skipped (no video could be read): stop with the
        cause before validation, so that no "best" model of an untrained branch is written."""
        counts = torch.tensor(self._epoch_batches, dtype=torch.float64, device=self.accelerator.device)
        trained, skipped = (int(v) for v in self.accelerator.reduce(counts, "sum"))
        if trained or not skipped:
            return
        data = self.config.data
        raise TrainingError(
            f"every training batch of epoch {epoch + 1} was skipped ({skipped} batches): no video of "
            f"{data.train} could be read from {data.video_root}, first: {self._first_failure()}; "
            "check data.video_root and data.video_path"
        )

    def _first_failure(self) -> str:
        """Why the first unreadable training video failed (this process's, or found by trying again: with
        DataLoader workers each worker keeps its own list)."""
        dataset = self._train_items.dataset
        if not dataset.failures:
            for index in range(min(len(dataset), 3)):
                if dataset[index] is None:
                    break
        return dataset.failures[0].message if dataset.failures else "(no reason recorded)"

    def _end_epoch(self, epoch: int) -> None:
        self._check_epoch_trained(epoch)
        metrics = self.evaluate()
        metric = metrics[self.recipe.metric]
        improved = self.progress.best_metric is None or metric > self.progress.best_metric
        if improved:
            self.progress.best_metric, self.progress.best_epoch = metric, epoch
            self._save_best(epoch, metrics)
        self.log.log(
            {
                "step": self.progress.global_step,
                "epoch": epoch,
                **metrics,
                "best": improved,
                "skipped_batches": self.progress.skipped_batches,
            }
        )
        if self.main:
            logger.info("epoch %d: %s %.4f%s", epoch + 1, self.recipe.metric, metric, " (best)" if improved else "")
        self.progress.epoch, self.progress.step_in_epoch = epoch + 1, 0
        self._save_checkpoint()

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """The stage's validation metrics (by log name; `recipe.metric` among them) over the whole validation
        split, every record scored exactly once (each process takes a share; the original's padded
        DistributedSampler counted some twice)."""
        self.model.eval()
        counts = torch.zeros(len(self.recipe.count_names), dtype=torch.float64)
        bars = self.main and show_progress_bars()
        for batch in tqdm(self.val_loader, desc="validation", disable=not bars, leave=False):
            if batch is not None:
                counts += torch.tensor(self.recipe.score(self.model, batch), dtype=torch.float64)
        counts = self.accelerator.reduce(counts.to(self.accelerator.device), "sum").cpu()
        if counts[1] == 0:
            raise ValueError(
                f"{self.config.data.val}: no validation item could be loaded or scored "
                f"(for moment queries: none has a sampled frame inside a relevant window)"
            )
        try:
            return self.recipe.metrics(counts.tolist())
        except ValueError as err:
            raise ValueError(f"{self.config.data.val}: {err}") from None

    # ------------------------------------------------------------------ writing
    def _save_checkpoint(self) -> None:
        a = self.accelerator
        self._flush_window()
        target = self.run_dir / ckpt.CHECKPOINT_DIR
        if self.main:
            ckpt.fresh_tmp_dir(target)
        a.wait_for_everyone()
        tmp = target.with_name(target.name + ".tmp")
        ckpt.write_rng(tmp, a.process_index)
        a.wait_for_everyone()
        if self.main:
            self.progress.metrics_lines = self.log.lines
            self.progress.schedule = self.schedule.state_dict()
            ckpt.write_checkpoint_files(tmp, self.model, self.optimizer, self.progress)
            ckpt.commit_dir(tmp, target)
        a.wait_for_everyone()

    def _save_best(self, epoch: int, metrics: dict[str, float]) -> None:
        if self.main:
            target = self.run_dir / ckpt.BEST_DIR
            tmp = ckpt.fresh_tmp_dir(target)
            self.model.save_pretrained(tmp)
            info = {
                "stage": self.recipe.stage,
                "epoch": epoch,
                **metrics,
                "selected_by": self.recipe.metric,
                "global_step": self.progress.global_step,
                "started_from": self.source,
                "localizer_from_blip2": self.localizer_from,
                **provenance(command="train"),
            }
            (tmp / "training.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
            ckpt.commit_dir(tmp, target)
        self.accelerator.wait_for_everyone()

    def _result(self, stopped: bool) -> StageResult:
        p = self.progress
        return StageResult(self.run_dir, self.recipe.metric, p.best_metric, p.best_epoch, p.global_step, stopped)


# ---------------------------------------------------------------------------------------------- entry point
def model_provenance(source: str) -> dict[str, Any]:
    """Where the starting model comes from: as written, and the directory a short name stands for."""
    kind, _, name = source.partition(" ")
    name = name.strip() if kind == "blip2" else source
    record: dict[str, Any] = {"model": source}
    try:
        resolved = resolve_name(name)
    except Exception:  # a named model that is not installed fails later, where it is loaded
        resolved = name
    if str(resolved) != name:
        record["model_directory"] = str(resolved)
    if Path(resolved).is_dir():
        record["model_directory"] = str(Path(resolved).resolve())
        record["model_revision"] = hub_revision(Path(resolved).resolve())
    return record


def write_run_record(config: TrainConfig, run_dir: Path, source: str, resuming: bool) -> None:
    """The run folder's ``config.yaml`` (the resolved config: file plus overrides) and ``provenance.json``
    (sevila version, start date, config file, starting model; each resume adds its date)."""
    import yaml

    run_dir.mkdir(parents=True, exist_ok=True)
    text = f"# resolved config of this run (from {config.source_file or 'the API'} and its overrides)\n"
    atomic_write_text(run_dir / CONFIG_NAME, text + yaml.safe_dump(config.to_dict(), sort_keys=False))
    path = run_dir / PROVENANCE_NAME
    record = None
    if resuming and path.is_file():
        try:
            record = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
    if isinstance(record, dict):
        record.setdefault("resumed", []).append(provenance()["date"])
    else:
        record = provenance(command="train", stage=config.stage, config_file=config.source_file)
        record.update(model_provenance(source))
        if config.localizer_from:
            record["localizer_from_blip2"] = config.localizer_from
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def _resume_point(config: TrainConfig, run_dir: Path, accelerator) -> Path | None:
    """The checkpoint a run directory continues from (after finishing an interrupted swap), if any."""
    if config.resume is False:
        return None
    point = run_dir / ckpt.CHECKPOINT_DIR if config.resume is True else Path(config.resume)
    if accelerator.is_main_process:
        ckpt.recover_dir(point)
    accelerator.wait_for_everyone()
    if isinstance(config.resume, str) and not point.is_dir():
        raise FileNotFoundError(f"checkpoint to resume not found: {point}")
    return point if point.is_dir() else None


def train(config: TrainConfig) -> TrainResult:
    """Run the configured stage (all its rounds) and return where its best model is."""
    accelerator = make_accelerator(config)
    recipe = recipe_for(config)
    run_dir = config.run_dir
    existing = _has_run(run_dir)
    accelerator.wait_for_everyone()  # every process looks before the main one writes anything
    if config.resume is False and existing:
        raise ValueError(f"{run_dir} already holds a run; resume it (--resume) or choose another output_dir")
    if isinstance(config.resume, str) and config.rounds > 1:
        raise ValueError("resume=<checkpoint> needs rounds=1; with rounds, use resume=true on the run directory")
    train_records = read_split(config.data.train, recipe, "train")
    val_records = read_split(config.data.val, recipe, "val")
    try:
        recipe.check_validation(val_records, config.data.val)
    except ValueError as err:
        raise ConfigError("select_by", str(err), config.source_file) from None
    source = config.model if config.model is not None else str(config.init)
    if accelerator.is_main_process:
        write_run_record(config, run_dir, source, resuming=config.resume is not False and existing)
    accelerator.wait_for_everyone()

    def stage(run_path: Path, start: str, localizer_from: str | None) -> StageResult:
        resume_from = _resume_point(config, run_path, accelerator)
        return StageRun(
            config, accelerator, recipe, start, run_path, train_records, val_records, resume_from, localizer_from
        ).run()

    if config.rounds == 1:
        if config.resume is True and _resume_point(config, run_dir, accelerator) is None:
            raise FileNotFoundError(f"nothing to resume: no {ckpt.CHECKPOINT_DIR}/ in {run_dir}")
        result = stage(run_dir, source, config.localizer_from)
        return TrainResult(
            run_dir, recipe.stage, result.metric, result.best_metric, result.best_dir, result.stopped, [result]
        )
    return _train_rounds(config, accelerator, recipe, source, stage)


def _train_rounds(config: TrainConfig, accelerator, recipe: Recipe, source: str, stage) -> TrainResult:
    run_dir, results = config.run_dir, []
    if config.resume is True and not (run_dir / "round-1").is_dir():
        raise FileNotFoundError(f"nothing to resume: no round-1/ in {run_dir}")
    start = source
    for number in range(1, config.rounds + 1):
        round_dir = run_dir / f"round-{number}"
        summary = round_dir / SUMMARY_NAME
        if summary.is_file():  # finished before a resume
            saved = json.loads(summary.read_text(encoding="utf-8"))
            result = StageResult(
                round_dir, saved["metric"], saved["best_metric"], saved["best_epoch"], saved["global_step"], False
            )
        else:
            if accelerator.is_main_process:
                logger.info("refine-localizer round %d of %d, starting from %s", number, config.rounds, start)
            result = stage(round_dir, start, config.localizer_from if number == 1 else None)
        results.append(result)
        if result.stopped:
            return TrainResult(run_dir, recipe.stage, result.metric, None, None, True, results)
        start = str(result.best_dir)
    best = max(results, key=lambda r: r.best_metric)  # the earliest round on ties
    if accelerator.is_main_process:
        ckpt.link_or_copy_tree(best.best_dir, run_dir / ckpt.BEST_DIR)
        info = {
            "best_round": results.index(best) + 1,
            "metric": best.metric,
            "rounds": [{"best_metric": r.best_metric, "best_epoch": r.best_epoch} for r in results],
        }
        atomic_write_text(run_dir / SUMMARY_NAME, json.dumps(info, indent=2) + "\n")
    accelerator.wait_for_everyone()
    return TrainResult(run_dir, recipe.stage, best.metric, best.best_metric, run_dir / ckpt.BEST_DIR, False, results)


__all__ = [
    "CONFIG_NAME",
    "PROVENANCE_NAME",
    "StageResult",
    "StageRun",
    "TrainResult",
    "TrainingError",
    "check_frozen_gradients",
    "check_trainable",
    "train",
]
