"""Loading prepared shards: one Ray Dataset per task, and the plain-PyTorch twin."""

from __future__ import annotations

import threading

import pytest
import torch

from multi_task_kobart.data.batching import collate
from multi_task_kobart.data.loading import (TaskIterableDataset, load_task_datasets,
                                           read_task_table, task_iterables)
from multi_task_kobart.data.prepare import prepare_dataset
from multi_task_kobart.tasks import TASKS


@pytest.fixture
def prepared(tmp_path, tokenizer, make_rows, write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=12))
    return prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.25)


def test_ray_datasets_per_task_match_the_manifest(prepared, ray_session):
    datasets = load_task_datasets(prepared.path.parent, "train")  # the out dir, via LATEST
    assert list(datasets) == list(TASKS)
    # One task is read in full: every Ray Data execution costs seconds on a 2-core machine,
    # and the per-task file lists are checked without Ray in the tests below.
    rows = datasets["qa_generation"].take_all()
    assert len(rows) == prepared.counts["train"]["qa_generation"] == 9
    expected = read_task_table(prepared.path, "train", "qa_generation").to_pylist()
    assert sorted(rows, key=lambda r: r["id"]) == sorted(expected, key=lambda r: r["id"])
    batch = collate({name: [r[name] for r in rows[:4]] for name in ("input_ids", "labels")})
    assert batch["input_ids"].shape[0] == 4


def test_ray_streaming_split_gives_each_worker_disjoint_rows(prepared, ray_session):
    dataset = load_task_datasets(prepared.path, "train", ["style_transfer"],
                                 columns=["id", "input_ids", "labels"])["style_transfer"]
    shards = dataset.streaming_split(2, equal=True)
    seen: list[list[str]] = [[], []]

    def consume(rank: int) -> None:  # streaming_split shards are read concurrently, as by workers
        for batch in shards[rank].iter_batches(batch_size=2, batch_format="numpy"):
            seen[rank].extend(batch["id"].tolist())

    threads = [threading.Thread(target=consume, args=(rank,)) for rank in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(seen[0]) == len(seen[1]) >= 4
    assert not set(seen[0]) & set(seen[1])


def test_torch_iterables_yield_every_row_of_each_task(prepared):
    # As the README shows it: the folder given to prepare_data's --out, and a split name.
    iterables = task_iterables(prepared.path.parent, "valid")
    assert list(iterables) == list(TASKS)
    for task, iterable in iterables.items():
        assert isinstance(iterable, torch.utils.data.IterableDataset)
        rows = list(iterable)
        assert len(rows) == len(iterable) == prepared.counts["valid"][task] == 3
        assert all(row["task"] == task and row["input_ids"][0] == 0 for row in rows)
        # The same rows that load_task_datasets reads (checked against this table above).
        assert rows == read_task_table(prepared.path, "valid", task).to_pylist()
    loader = torch.utils.data.DataLoader(iterables["role_generation"], batch_size=2, collate_fn=collate)
    assert [b["input_ids"].shape[0] for b in loader] == [2, 1]


def test_torch_iterable_ranks_are_disjoint_equal_and_reshuffle_per_epoch(prepared):
    def ids(rank: int, epoch: int = 0) -> list[str]:
        data = TaskIterableDataset(prepared.path, "train", "qa_generation", shuffle=True, seed=5,
                                   rank=rank, world_size=2, columns=["id"])
        data.set_epoch(epoch)
        return [row["id"] for row in data]

    rank0, rank1 = ids(0), ids(1)
    assert len(rank0) == len(rank1) == 4  # 9 rows over 2 ranks: equal shares, one left over
    assert not set(rank0) & set(rank1)
    assert ids(0) == rank0 and ids(0, epoch=1) != rank0
    with pytest.raises(ValueError, match="rank=2"):
        TaskIterableDataset(prepared.path, "train", "qa_generation", rank=2, world_size=2)


def test_missing_split_or_task_names_what_exists(prepared):
    with pytest.raises(KeyError, match="no rows for split='test'"):
        load_task_datasets(prepared.path, "test", ["style_transfer"])
