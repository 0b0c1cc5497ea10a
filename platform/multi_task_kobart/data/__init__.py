"""Data pipeline: read + validate seed files, tokenize into Parquet shards, load, mix, batch.

Names are exported lazily: ``import multi_task_kobart.data.corpus`` (or a data-only job)
does not pay for torch, Ray and ``datasets`` until one of them is actually used.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "prepare": ("PreparedDataset", "prepare_dataset", "prepare_from_config", "write_bundled_corpus",
                "read_manifest", "resolve_prepared_dir", "format_summary"),
    "loading": ("load_task_datasets", "task_iterables", "TaskIterableDataset", "read_task_table",
                "task_files", "available_tasks"),
    "sampling": ("TaskSampler", "mixing_weights", "format_balance"),
    "batching": ("collate", "length_grouped_batches", "padding_fraction"),
    "validation": ("RowError", "DataValidationError"),
    "shards": ("PARQUET_SCHEMA",),
    "corpus": ("generate_corpus", "write_corpus"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'multi_task_kobart.data' has no attribute {name!r}")
    return getattr(importlib.import_module(f"multi_task_kobart.data.{module}"), name)
