"""Converters of public relocalisation datasets into the DSAC* layout (glace_core/dataset.py).

One module per dataset, each with ``convert(raw_dir, out_dir, *, scene=None, download_missing=False,
...)`` returning {scene: {split: frame count}}; shared helpers in ``common``. ``DATASETS`` maps the
``glace-convert-dataset`` dataset names onto the modules.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from glace_core.converters.common import ConversionError

DATASETS = {"7scenes": "seven_scenes", "12scenes": "twelve_scenes", "cambridge": "cambridge", "aachen": "aachen"}


def converter(dataset: str) -> ModuleType:
    """The converter module of ``dataset`` (one of ``DATASETS``)."""
    if dataset not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}; valid: {sorted(DATASETS)}")
    return importlib.import_module(f"glace_core.converters.{DATASETS[dataset]}")


__all__ = ["ConversionError", "DATASETS", "converter"]
