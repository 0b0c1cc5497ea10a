"""Rows to evaluate, grouped by task: from a prepared (Parquet) dataset or from seed files.

A prepared dataset (``jobs/prepare_data.py`` output, found by its manifest) gives the text and
the token ids of ``split``; the ids are kept only when the manifest's tokenizer fingerprint is
the evaluated model's, else the evaluator re-encodes the text with the model's tokenizer.

Seed files (JSONL/JSON/CSV/TSV/Parquet ``{task, input, target[, answers]}``, or folders of
them) are read and validated by the data pipeline's reader. Files whose names mark ``split``
(``test.jsonl``, ``dev/...``) are used when there are any; otherwise every file is evaluated,
since a file such as ``../shared/realdata/qa_generation.jsonl`` names no split at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from multi_task_kobart.tasks import TASKS, validate_task

_TEXT_COLUMNS = ("id", "task", "input", "target", "answers")
_ID_COLUMNS = ("input_ids", "labels")


@dataclass
class LoadedExamples:
    """Rows per task plus where they came from (kept in the report)."""

    by_task: dict[str, list[dict[str, Any]]]
    source: dict[str, Any] = field(default_factory=dict)


def _is_prepared(path: Path) -> bool:
    from multi_task_kobart.data.prepare import resolve_prepared_dir

    if not path.is_dir():
        return False
    try:
        resolve_prepared_dir(path)
    except FileNotFoundError:
        return False
    return True


def load_examples(data: str | Path | Sequence[str | Path], *, split: str = "test",
                  tasks: Sequence[str] | None = None,
                  tokenizer_fingerprint: str | None = None, encoding: str = "utf-8") -> LoadedExamples:
    """Rows of ``split`` per task from a prepared dataset or from seed files/folders (text seed
    files decoded with ``encoding``)."""
    wanted = [validate_task(task) for task in tasks] if tasks else list(TASKS)
    items = [data] if isinstance(data, (str, Path)) else list(data)
    if len(items) == 1 and _is_prepared(Path(items[0])):
        loaded = _load_prepared(Path(items[0]), split, wanted, tokenizer_fingerprint)
    else:
        loaded = _load_seed_files(items, split, wanted, encoding)
    if not any(loaded.by_task.values()):
        raise ValueError(f"no rows to evaluate in {[str(i) for i in items]} for split={split!r} "
                         f"and tasks {wanted}; check --data, --split and --tasks")
    return loaded


def _load_prepared(path: Path, split: str, tasks: list[str],
                   tokenizer_fingerprint: str | None) -> LoadedExamples:
    from multi_task_kobart.data.loading import available_tasks, read_task_table
    from multi_task_kobart.data.prepare import read_manifest, resolve_prepared_dir

    root = resolve_prepared_dir(path)
    manifest = read_manifest(root)
    prepared_fingerprint = manifest.get("tokenizer", {}).get("fingerprint")
    # Token ids from another tokenizer would be nonsense to this model: keep only the text then.
    keep_ids = tokenizer_fingerprint is None or tokenizer_fingerprint == prepared_fingerprint
    columns = list(_TEXT_COLUMNS) + (list(_ID_COLUMNS) if keep_ids else [])
    present = set(available_tasks(root, split))
    by_task = {task: read_task_table(root, split, task, columns).to_pylist()
               for task in tasks if task in present}
    source = {"kind": "prepared", "path": str(root), "split": split,
              "tokenizer_fingerprint": prepared_fingerprint, "pretokenized_ids_used": keep_ids}
    return LoadedExamples(by_task, source)


def _load_seed_files(items: list[str | Path], split: str, tasks: list[str], encoding: str) -> LoadedExamples:
    from multi_task_kobart.data.reading import check_row, discover_sources, read_source

    sources = discover_sources(items)
    matching = [source for source in sources if source.split == split]
    chosen = matching or sources
    by_task: dict[str, list[dict[str, Any]]] = {task: [] for task in tasks}
    invalid = 0
    for source in chosen:
        for row in read_source(source, encoding):
            if check_row(row):
                invalid += 1  # the data pipeline reports these in detail; here we only count
                continue
            record = row.record
            if record["task"] in by_task:
                by_task[record["task"]].append({
                    "id": f"{row.file}:{row.line}", "task": record["task"], "input": record["input"],
                    "target": record["target"], "answers": record.get("answers")})
    source_info = {"kind": "seed", "files": [source.name for source in chosen], "split": split,
                   "split_matched_file_names": bool(matching), "invalid_rows_skipped": invalid}
    return LoadedExamples({task: rows for task, rows in by_task.items() if rows}, source_info)
