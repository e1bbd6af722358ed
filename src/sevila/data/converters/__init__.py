"""Converters from each dataset's original release files to records, one module per dataset.

`convert(dataset, annotation, video_map=..., grounding=...)` picks the converter; an annotation file
that is an original SeViLA preprocessed list (``sevila_data/<dataset>/<split>.json``) is read as such, so
splits whose raw release is not at hand (STAR val) can still be brought into the record format.
`sort_inputs` tells annotation files from the auxiliary files (video maps, grounding) by their names.

Every converter returns its records and a `ConversionSummary`; malformed input raises `DataError`
(a ValueError) naming the file, the line or record index, and the field. No torch here.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

from sevila.data.converters import how2qa, nextgqa, nextqa, qvhighlights, star, tvqa, vlep
from sevila.data.converters.common import Conversion, ConversionSummary, new_summary
from sevila.data.records import DATASETS, check_unique_qids
from sevila.data.sevila_format import looks_like_sevila, read_sevila
from sevila.data.sources import DataError

__all__ = ["CONVERTIBLE_DATASETS", "DATASETS", "Conversion", "ConversionSummary", "Inputs", "convert", "sort_inputs"]

PathLike = str | os.PathLike[str]

# Which auxiliary files each dataset takes (keyword arguments of its converter).
_EXTRAS: dict[str, tuple[str, ...]] = {
    "nextqa": ("video_map",),
    "nextgqa": ("video_map", "grounding"),
    "how2qa": ("video_map",),
}
_CONVERTERS: dict[str, Callable[..., Conversion]] = {
    "nextqa": nextqa.convert,
    "nextgqa": nextgqa.convert,
    "star": star.convert,
    "how2qa": how2qa.convert,
    "tvqa": tvqa.convert,
    "vlep": vlep.convert,
    "qvhighlights": qvhighlights.convert,
}
CONVERTIBLE_DATASETS = tuple(_CONVERTERS)
"""The datasets with release files to convert (every dataset of `DATASETS` but "synthetic", which its generator
writes as records)."""

# Auxiliary files recognised by name, and release files that are not annotations at all.
VIDEO_MAP_NAMES = ("map_vid_vidorID.json", "how2_vid_mapping.json")
GROUNDING_PATTERN = "gsub_*.json"
_NOT_ANNOTATIONS = {
    "frame2time_*.json": "NExT-GQA's 32 sampled frame timestamps per video",
    "upbd_*.json": "NExT-GQA's 32 sampled frame timestamps per video",
}


class Inputs(NamedTuple):
    annotation: Path
    video_map: Path | None
    grounding: Path | None


def sort_inputs(
    dataset: str, paths: Sequence[PathLike], *, video_map: PathLike | None = None, grounding: PathLike | None = None
) -> Inputs:
    """Split the files given for one split into the annotation file and the auxiliary files.

    Video maps are recognised by name (``map_vid_vidorID.json``, ``how2_vid_mapping.json``), grounding
    files by ``gsub_*.json``; explicit `video_map`/`grounding` paths count too. Exactly one annotation file
    must remain: splits are converted one at a time because row-numbered qids (``TVQA_{row}``) repeat
    across splits.
    """
    annotations = []
    extras: dict[str, Path | None] = {
        "video_map": Path(video_map) if video_map else None,
        "grounding": Path(grounding) if grounding else None,
    }
    for path in map(Path, paths):
        for pattern, what in _NOT_ANNOTATIONS.items():
            if path.match(pattern):
                raise ValueError(f"{path}: holds {what}, not annotations; give the split's csv (and gsub_*.json)")
        if path.name in VIDEO_MAP_NAMES:
            kind = "video_map"
        elif path.match(GROUNDING_PATTERN):
            kind = "grounding"
        else:
            annotations.append(path)
            continue
        if extras[kind] is not None and extras[kind] != path:
            raise ValueError(f"two {kind.replace('_', ' ')} files given: {extras[kind]} and {path}")
        extras[kind] = path
    if len(annotations) != 1:
        found = ", ".join(map(str, annotations)) or "none"
        auxiliary = ", ".join(str(p) for p in extras.values() if p is not None)
        raise ValueError(
            f"{dataset}: give exactly one annotation file (one split), found {found}"
            + (f" besides the auxiliary files {auxiliary}" if auxiliary else "")
        )
    return Inputs(annotations[0], extras["video_map"], extras["grounding"])


def convert(
    dataset: str, annotation: PathLike, *, video_map: PathLike | None = None, grounding: PathLike | None = None
) -> Conversion:
    """Records of one split of `dataset` from its release file (or an original preprocessed list)."""
    if dataset not in _CONVERTERS:
        raise ValueError(f"unknown dataset {dataset!r}; choose one of {', '.join(CONVERTIBLE_DATASETS)}")
    given = {name: path for name, path in (("video_map", video_map), ("grounding", grounding)) if path is not None}
    for name, path in given.items():
        if name not in _EXTRAS.get(dataset, ()):
            raise ValueError(f"{path}: {dataset} takes no {name.replace('_', ' ')} file")
    if looks_like_sevila(annotation):
        if given:
            raise ValueError(f"{annotation}: an original SeViLA preprocessed file takes no auxiliary files")
        records = read_sevila(annotation, dataset)
        summary = new_summary(dataset, annotation)
        summary.records_in = len(records)
        summary.notes["read as an original SeViLA preprocessed file"] = len(records)
        conversion = Conversion(records, summary)
    else:
        conversion = _CONVERTERS[dataset](annotation, **given)
    if conversion.summary.records_in == 0:
        raise DataError(annotation, None, None, "no records to convert (an empty file?)")
    check_unique_qids(conversion.records, annotation)
    conversion.summary.records_out = len(conversion.records)
    return conversion
