"""Training and validation batches: which records, in which order, on which process, with which randomness.

Two choices make a run reproducible across resumption, process counts and DataLoader workers:

* **Order.** Every epoch is one permutation of the training records, drawn from ``(seed, epoch)`` only,
  cut to a whole number of global batches (``batch_size × processes × grad_accum_steps``; the rest of the
  epoch is dropped, as the original's ``drop_last``), and dealt to the processes round-robin, so one
  process with a batch of ``2b`` sees at every step exactly the records that two processes with ``b``
  each see together. Resuming skips the batches already consumed in the epoch.
* **Augmentation.** The dataset draws its random frame indices and crop from the global `random` and
  torch generators. Each item is therefore produced under generators seeded from ``(seed, epoch, index)``
  (and the caller's generator states are restored afterwards), so an item's frames depend on nothing
  else: not on the worker that loads it, the process count, or whether the run was resumed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sevila.data import VideoRecordDataset, collate
from sevila.data.records import QARecord, Record
from sevila.evaluate.metrics.qa import question_type_of
from sevila.utils.batching import positions_by_key

Key = tuple[int, int]  # (record index, item seed)


def item_seed(seed: int, epoch: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededItems(Dataset):
    """`VideoRecordDataset` items fetched by ``(index, seed)`` under seeded generators; adds ``num_options``
    (the record's option count, None for moment records) because a batch must share it, and
    ``question_type`` (the record's, else its qid's prefix; None for moment records) for per-type metrics."""

    def __init__(self, dataset: VideoRecordDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: Key) -> dict[str, Any] | None:
        index, seed = key
        python_state = random.getstate()
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(seed)
                torch.default_generator.manual_seed(seed)
                item = self.dataset[index]
        finally:
            random.setstate(python_state)
        if item is not None:
            record = self.dataset.records[index]
            qa = isinstance(record, QARecord)
            item["num_options"] = len(record.options) if qa else None
            item["question_type"] = (record.question_type or question_type_of(record.qid)) if qa else None
        return item


class EpochBatches(Sampler[list[Key]]):
    """One process's batches of one epoch (module docstring); `set_epoch` before iterating."""

    def __init__(
        self,
        size: int,
        batch_size: int,
        *,
        seed: int,
        shuffle: bool,
        rank: int = 0,
        world_size: int = 1,
        accumulation: int = 1,
        drop_last: bool = True,
    ):
        self.size, self.batch_size, self.seed, self.shuffle = size, batch_size, seed, shuffle
        self.rank, self.world_size, self.accumulation, self.drop_last = rank, world_size, accumulation, drop_last
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch, self.start_batch = epoch, start_batch

    def _order(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.size))
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        return torch.randperm(self.size, generator=generator).tolist()

    def _mine(self) -> list[int]:
        order = self._order()
        if self.drop_last:
            global_batch = self.batch_size * self.world_size * self.accumulation
            order = order[: len(order) // global_batch * global_batch]
        return order[self.rank :: self.world_size]

    def __len__(self) -> int:
        mine = len(self._mine())
        full = mine // self.batch_size if self.drop_last else -(-mine // self.batch_size)
        return max(full - self.start_batch, 0)

    def __iter__(self) -> Iterator[list[Key]]:
        mine = self._mine()
        for start in range(self.start_batch * self.batch_size, len(mine), self.batch_size):
            indices = mine[start : start + self.batch_size]
            yield [(i, item_seed(self.seed, self.epoch, i)) for i in indices]


def loader(items: SeededItems, batches: EpochBatches, num_workers: int, pin_memory: bool) -> DataLoader:
    """A DataLoader over `EpochBatches`. It gets a generator of its own: by default every new iterator
    draws its workers' base seed from the global torch generator, and a resumed run, which starts its
    iterator mid-epoch, would then draw once more than an uninterrupted one and shift every dropout mask."""
    return DataLoader(
        items,
        batch_sampler=batches,
        collate_fn=collate,
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(batches.seed),
    )


def shared_option_count(batch: dict[str, Any]) -> int:
    """The option count of a QA batch; every record in it must have the same."""
    counts = set(batch["num_options"])
    if len(counts) != 1 or None in counts:
        raise ValueError(
            f"a batch mixes records with {sorted(c for c in counts if c is not None)} options (qids "
            f"{batch['qid'][:4]}...); split it with split_by_options first"
        )
    return counts.pop()


def split_by_options(batch: dict[str, Any]) -> list[dict[str, Any]]:
    """A batch as sub-batches that each share one option count."""
    groups = positions_by_key(batch["num_options"])
    if len(groups) == 1:
        return [batch]
    return [_rows(batch, rows) for rows in groups.values()]


def _rows(batch: dict[str, Any], rows: Sequence[int]) -> dict[str, Any]:
    index = torch.tensor(rows)
    return {
        key: value[index] if isinstance(value, torch.Tensor) else [value[r] for r in rows]
        for key, value in batch.items()
    }


def check_records(records: Sequence[Record], kind: type, split: str, source: str) -> None:
    """Every record of a split is of the stage's kind (QA or moment) and labeled."""
    if not records:
        raise ValueError(f"{source}: the {split} split has no records")
    for record in records:
        if not isinstance(record, kind):
            raise ValueError(
                f"{source}: record {record.qid!r} is a {type(record).__name__}; this stage trains on {kind.__name__}s"
            )
        if not record.labeled:
            raise ValueError(f"{source}: record {record.qid!r} has no label; {split} records need one")


__all__ = [
    "EpochBatches",
    "SeededItems",
    "check_records",
    "item_seed",
    "loader",
    "shared_option_count",
    "split_by_options",
]
