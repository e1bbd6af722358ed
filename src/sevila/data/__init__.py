"""Annotations and video data: the unified records, the converters from every dataset's release files,
the original SeViLA file format, and (imported lazily, because it needs torch) the torch `Dataset`.

`import sevila.data` and everything it imports eagerly stay free of torch, so preparing data needs no
deep-learning stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sevila.data.converters import Conversion, ConversionSummary, convert, sort_inputs
from sevila.data.records import (
    DATASETS,
    MOMENT_DATASETS,
    QA_DATASETS,
    MomentRecord,
    QARecord,
    Record,
    iter_records,
    read_records,
    record_from_dict,
    record_to_dict,
    write_records,
)
from sevila.data.sevila_format import from_sevila_dict, read_sevila, to_sevila_dict, write_sevila
from sevila.data.sources import DataError

if TYPE_CHECKING:  # pragma: no cover
    from sevila.data.dataset import LoadFailure, VideoRecordDataset, collate

_LAZY = ("LoadFailure", "VideoRecordDataset", "collate")

__all__ = [
    "LoadFailure",
    "VideoRecordDataset",
    "collate",
    "DATASETS",
    "MOMENT_DATASETS",
    "QA_DATASETS",
    "Conversion",
    "ConversionSummary",
    "DataError",
    "MomentRecord",
    "QARecord",
    "Record",
    "convert",
    "from_sevila_dict",
    "iter_records",
    "read_records",
    "read_sevila",
    "record_from_dict",
    "record_to_dict",
    "sort_inputs",
    "to_sevila_dict",
    "write_records",
    "write_sevila",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sevila.data import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module 'sevila.data' has no attribute {name!r}")
