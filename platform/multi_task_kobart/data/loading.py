"""Read prepared shards back: one Ray Dataset per task, or plain PyTorch iterables.

Ray Train path: ``load_task_datasets(prepared, "train")`` gives ``{task: ray.data.Dataset}``
(``ray.data.read_parquet`` over the task's shard files); pass them to ``TorchTrainer(
datasets=...)`` and read ``ray.train.get_dataset_shard(name)`` in the workers, or call
``streaming_split(n)`` yourself. On a multi-node cluster the prepared folder must be on
storage every node can read (NFS, or an object-store URI copied there).

Single-process path: ``TaskIterableDataset`` streams the same rows with pyarrow only, so a
notebook or a unit test needs neither Ray nor a cluster.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Any, Iterator, Sequence

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from multi_task_kobart.data.prepare import read_manifest, resolve_prepared_dir
from multi_task_kobart.tasks import validate_task

#: Columns the training loop needs; the rest (text, provenance) is for evaluation and audits.
TRAINING_COLUMNS: tuple[str, ...] = ("id", "input_ids", "labels", "source_len", "target_len")


def task_files(prepared_dir: str | Path, split: str, task: str) -> list[Path]:
    """Shard files of one (split, task), as listed in the manifest."""
    root = resolve_prepared_dir(prepared_dir)
    manifest = read_manifest(root)
    info = manifest["splits"].get(split, {}).get(validate_task(task))
    if info is None:
        present = {s: sorted(tasks) for s, tasks in manifest["counts"].items()}
        raise KeyError(f"prepared dataset {str(root)!r} has no rows for split={split!r}, "
                       f"task={task!r}; it holds {present}.")
    return [root / name for name in info["files"]]


def available_tasks(prepared_dir: str | Path, split: str) -> list[str]:
    """Tasks that have rows in ``split``, in canonical order."""
    return list(read_manifest(prepared_dir)["counts"].get(split, {}))


def load_task_datasets(prepared_dir: str | Path, split: str = "train",
                       tasks: Sequence[str] | None = None, *,
                       columns: Sequence[str] | None = None,
                       limit_per_task: int | None = None) -> dict[str, Any]:
    """``{task: ray.data.Dataset}`` for ``split`` (all tasks present unless ``tasks`` is given).

    Train shards are already shuffled at preparation, so ``limit_per_task`` keeps a random
    sample, not the head of the first source file.
    """
    import ray.data

    chosen = list(tasks) if tasks is not None else available_tasks(prepared_dir, split)
    datasets = {}
    for task in chosen:
        files = [str(path) for path in task_files(prepared_dir, split, task)]
        dataset = ray.data.read_parquet(files, columns=list(columns) if columns else None)
        datasets[task] = dataset.limit(limit_per_task) if limit_per_task else dataset
    return datasets


def read_task_table(prepared_dir: str | Path, split: str, task: str,
                    columns: Sequence[str] | None = None) -> pa.Table:
    """One (split, task) as an in-memory Arrow table."""
    tables = [pq.read_table(path, columns=list(columns) if columns else None)
              for path in task_files(prepared_dir, split, task)]
    return pa.concat_tables(tables)


def manifest_hash(prepared_dir: str | Path) -> str:
    """SHA-256 of a prepared dataset's ``manifest.json``: what a checkpoint records so that a
    run never resumes over data that changed under it."""
    return hashlib.sha256((resolve_prepared_dir(prepared_dir) / "manifest.json").read_bytes()).hexdigest()


def rank_row_range(n_rows: int, rank: int, world_size: int) -> tuple[int, int]:
    """The contiguous rows ``[start, stop)`` of ``n_rows`` that ``rank`` trains on.

    Ranks get consecutive, equal (within one row) slices in the manifest's file order. Train
    shards are shuffled at preparation, so a slice is a random sample; the rule needs only
    the row count, so every rank (and a resumed run) computes the same split alone.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank!r} must be in [0, world_size={world_size!r}).")
    return n_rows * rank // world_size, n_rows * (rank + 1) // world_size


def read_rank_rows(prepared_dir: str | Path, split: str, task: str, rank: int, world_size: int,
                   columns: Sequence[str] | None = None) -> pa.Table:
    """This rank's slice (:func:`rank_row_range`) of one (split, task), reading only the Parquet
    row groups that overlap it: the large-data path, where no process holds every row."""
    files = [pq.ParquetFile(path) for path in task_files(prepared_dir, split, task)]
    total = sum(handle.metadata.num_rows for handle in files)
    start, stop = rank_row_range(total, rank, world_size)
    pieces, offset = [], 0
    for handle in files:
        for group in range(handle.metadata.num_row_groups):
            size = handle.metadata.row_group(group).num_rows
            lo, hi = max(start, offset), min(stop, offset + size)
            if lo < hi:
                table = handle.read_row_group(group, columns=list(columns) if columns else None)
                pieces.append(table.slice(lo - offset, hi - lo))
            offset += size
    if not pieces:  # fewer rows than ranks: an empty table of the same columns
        empty = files[0].schema_arrow.empty_table()
        return empty.select(list(columns)) if columns else empty
    return pa.concat_tables(pieces)


class TaskIterableDataset(torch.utils.data.IterableDataset):
    """Rows of one (split, task) as dicts, for a plain ``DataLoader`` or a Python loop.

    ``shuffle``: a new seeded order each epoch (``set_epoch``). ``rank``/``world_size``: each
    rank takes every world_size-th row of the same permutation, and all ranks get the same
    number of rows (the few left over are dropped) so DDP steps stay in lock-step.
    DataLoader workers split a rank's rows further, so no row is read twice.
    """

    def __init__(self, prepared_dir: str | Path, split: str, task: str, *,
                 columns: Sequence[str] | None = None, shuffle: bool = False, seed: int = 0,
                 rank: int = 0, world_size: int = 1, limit: int | None = None):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank={rank!r} must be in [0, world_size={world_size!r}).")
        self.table = read_task_table(prepared_dir, split, task, columns)
        if limit is not None:
            self.table = self.table.slice(0, limit)
        self.task, self.split = task, split
        self.shuffle, self.seed, self.epoch = shuffle, seed, 0
        self.rank, self.world_size = rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        indices = list(range(self.table.num_rows))
        if self.shuffle:
            random.Random(f"{self.seed}:{self.epoch}:{self.task}").shuffle(indices)
        per_rank = len(indices) // self.world_size if self.world_size > 1 else len(indices)
        return indices[self.rank::self.world_size][:per_rank]

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self) -> Iterator[dict[str, Any]]:
        indices = self._indices()
        worker = torch.utils.data.get_worker_info()
        if worker is not None:
            indices = indices[worker.id::worker.num_workers]
        # take() + to_pylist() per chunk: one Arrow call per 1024 rows instead of per cell.
        for start in range(0, len(indices), 1024):
            yield from self.table.take(indices[start:start + 1024]).to_pylist()

def task_iterables(prepared_dir: str | Path, split: str = "train",
                   tasks: Sequence[str] | None = None, **kwargs: Any) -> dict[str, TaskIterableDataset]:
    """``{task: TaskIterableDataset}``: the single-process twin of ``load_task_datasets``."""
    chosen = list(tasks) if tasks is not None else available_tasks(prepared_dir, split)
    return {task: TaskIterableDataset(prepared_dir, split, task, **kwargs) for task in chosen}
