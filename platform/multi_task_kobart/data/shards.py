"""Batched tokenization and the Parquet shard layout ``<root>/<split>/<task>/part-NNNNN.parquet``.

Tokenization happens here, once, during preparation, with ``datasets.map(batched=True)``:
fast tokenizers encode a whole batch in Rust (in parallel threads), which is where the
speed-up over a per-row loop comes from, and the training collate then only pads ids.
Every shard has the same Arrow schema (``PARQUET_SCHEMA``), which training and evaluation
code read by column name.
"""

from __future__ import annotations

import contextlib
import os
from functools import partial
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from multi_task_kobart.data.reading import SPLITS
from multi_task_kobart.tasks import TASKS

#: The row schema of every shard (training and evaluation rely on these names and types).
PARQUET_SCHEMA = pa.schema([
    ("id", pa.string()),  # stable content id (sha1 of task/input/target, -k on repeats)
    ("task", pa.string()),
    ("input", pa.string()),
    ("target", pa.string()),
    ("answers", pa.list_(pa.string())),  # all gold answers (QA); null when the source has none
    ("input_ids", pa.list_(pa.int32())),  # <s> + tokens(input) + </s>, truncated
    ("labels", pa.list_(pa.int32())),  # tokens(target) + </s>, truncated
    ("source_len", pa.int32()),  # len(input_ids)
    ("target_len", pa.int32()),  # len(labels)
    ("source_file", pa.string()),  # file name relative to the input root
    ("source_line", pa.int64()),  # 1-based line (text formats) or 0-based row (Parquet)
])
_INPUT_TYPES = {"answers": pa.list_(pa.string()), "source_line": pa.int64()}
#: Rows handed to the tokenizer per call; large enough for Rust to parallelise, small
#: enough to keep a worker's memory flat.
TOKENIZE_BATCH_SIZE = 1000
# Below this many rows per process, a second process costs more (fork + pickling the
# tokenizer) than it saves.
_MIN_ROWS_PER_PROCESS = 20_000


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@contextlib.contextmanager
def _rust_threads(enabled: bool) -> Iterator[None]:
    """Turn the tokenizer's Rust thread pool off (unless the user chose a setting).

    On 2 cores shared with other work, the pool's threads compete with everything else and
    waiting workers spin: a 40k-text batch took 2.0 s with the pool and 1.25 s without.
    ``tokenizers`` reads TOKENIZERS_PARALLELISM on every call, so a temporary setting works.
    """
    if enabled or "TOKENIZERS_PARALLELISM" in os.environ:
        yield
        return
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    try:
        yield
    finally:
        os.environ.pop("TOKENIZERS_PARALLELISM", None)


def auto_num_proc(n_rows: int) -> int:
    """Processes for ``datasets.map``: one per ~20k rows, at most half the cores (and 8).

    Half, because one process already spreads each batch over several cores with the
    tokenizer's Rust threads (datasets turns those off inside worker processes); on a
    2-core machine this means a single process, which measured faster there than two.
    """
    return max(1, min(_cores() // 2, 8, n_rows // _MIN_ROWS_PER_PROCESS))


def tokenize_columns(columns: dict[str, list[Any]], tokenizer: Any, max_source_length: int,
                     max_target_length: int, *, num_proc: int | None = None,
                     progress: bool = False) -> pa.Table:
    """Columns of validated rows -> an Arrow table with ids, lengths and truncation flags."""
    import datasets

    # Build the Arrow table directly: Dataset.from_dict would re-encode every cell in Python.
    table = pa.table({name: pa.array(values, type=_INPUT_TYPES.get(name, pa.string()))
                      for name, values in columns.items()})
    dataset = datasets.Dataset(table)
    out_features = dataset.features.copy()
    out_features.update({"input_ids": datasets.List(datasets.Value("int32")),
                         "labels": datasets.List(datasets.Value("int32")),
                         "source_len": datasets.Value("int32"), "target_len": datasets.Value("int32"),
                         "input_truncated": datasets.Value("bool"),
                         "target_truncated": datasets.Value("bool")})
    processes = num_proc or auto_num_proc(len(dataset))
    encode = partial(_encode_batch, tokenizer=tokenizer, max_source_length=max_source_length,
                     max_target_length=max_target_length)
    was_enabled = datasets.is_progress_bar_enabled()
    (datasets.enable_progress_bars if progress else datasets.disable_progress_bars)()
    try:
        with _rust_threads(processes == 1 and _cores() > 2):
            # new_fingerprint skips hashing the tokenizer (slow, and it would only name a
            # cache file we never write: the dataset lives in memory). num_proc None, not 1:
            # datasets runs num_proc=1 in a subprocess.
            encoded = dataset.map(encode, batched=True, batch_size=TOKENIZE_BATCH_SIZE,
                                  num_proc=processes if processes > 1 else None,
                                  features=out_features, keep_in_memory=True,
                                  new_fingerprint="mtk-tokenize", desc="Tokenizing")
    finally:
        (datasets.enable_progress_bars if was_enabled else datasets.disable_progress_bars)()
    return encoded.data.table


def _encode_batch(batch: dict[str, list[Any]], *, tokenizer: Any, max_source_length: int,
                  max_target_length: int) -> dict[str, list[Any]]:
    from multi_task_kobart.tokenizer import encode_sources, encode_targets

    input_ids, input_truncated = encode_sources(tokenizer, batch["input"], max_source_length)
    labels, target_truncated = encode_targets(tokenizer, batch["target"], max_target_length)
    return {"input_ids": input_ids, "labels": labels,
            "source_len": [len(ids) for ids in input_ids], "target_len": [len(ids) for ids in labels],
            "input_truncated": input_truncated, "target_truncated": target_truncated}


def write_shards(table: pa.Table, root: Path, rows_per_shard: int) -> dict[str, dict[str, dict[str, Any]]]:
    """Write one folder per (split, task) and return per-folder statistics for the manifest."""
    stats: dict[str, dict[str, dict[str, Any]]] = {}
    for split in SPLITS:
        in_split = table.filter(pc.equal(table["split"], split))
        for task in TASKS:
            part = in_split.filter(pc.equal(in_split["task"], task))
            if part.num_rows:
                stats.setdefault(split, {})[task] = _write_part(part, root, split, task, rows_per_shard)
    return stats


def _write_part(part: pa.Table, root: Path, split: str, task: str, rows_per_shard: int) -> dict[str, Any]:
    folder = root / split / task
    folder.mkdir(parents=True, exist_ok=True)
    rows = part.select(PARQUET_SCHEMA.names).cast(PARQUET_SCHEMA)
    files = []
    for number, start in enumerate(range(0, rows.num_rows, rows_per_shard)):
        path = folder / f"part-{number:05d}.parquet"
        pq.write_table(rows.slice(start, rows_per_shard), path, compression="zstd")
        files.append(path.relative_to(root).as_posix())
    return {
        "rows": rows.num_rows,
        "files": files,
        "truncated_inputs": int(pc.sum(part["input_truncated"]).as_py() or 0),
        "truncated_targets": int(pc.sum(part["target_truncated"]).as_py() or 0),
        "source_tokens": int(pc.sum(part["source_len"]).as_py() or 0),
        "target_tokens": int(pc.sum(part["target_len"]).as_py() or 0),
        "max_source_len": int(pc.max(part["source_len"]).as_py() or 0),
        "max_target_len": int(pc.max(part["target_len"]).as_py() or 0),
    }
