"""The split of rows over training ranks: contiguous slices, computed alone by every rank, read
from only the Parquet row groups a rank needs (the large-data path)."""

from __future__ import annotations

import shutil

import pyarrow.parquet as pq
import pytest

from multi_task_kobart.data.loading import (manifest_hash, rank_row_range, read_rank_rows,
                                            read_task_table, task_files)


@pytest.mark.parametrize("n_rows", [0, 1, 5, 1000, 1001])
@pytest.mark.parametrize("world_size", [1, 2, 3, 8])
def test_rank_slices_cover_every_row_once_and_differ_by_at_most_one(n_rows, world_size):
    ranges = [rank_row_range(n_rows, rank, world_size) for rank in range(world_size)]
    assert ranges[0][0] == 0 and ranges[-1][1] == n_rows
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(ranges, ranges[1:]))
    sizes = [stop - start for start, stop in ranges]
    assert max(sizes) - min(sizes) <= 1


def test_a_rank_outside_the_world_is_an_error():
    with pytest.raises(ValueError, match=r"rank=2 must be in \[0, world_size=2\)"):
        rank_row_range(10, 2, 2)


@pytest.fixture(scope="module")
def small_row_groups(prepared_tiny, tmp_path_factory):
    """A copy of the prepared corpus whose shards hold row groups of 37 rows (real shards hold
    100k rows per group, so a slice boundary inside a group needs small ones to be tested)."""
    copy = shutil.copytree(prepared_tiny, tmp_path_factory.mktemp("groups") / "prepared", symlinks=True)
    for path in task_files(copy, "train", "style_transfer"):
        pq.write_table(pq.read_table(path), path, row_group_size=37)
    assert pq.ParquetFile(task_files(copy, "train", "style_transfer")[0]).metadata.num_row_groups > 3
    return copy


@pytest.mark.parametrize("world_size", [1, 2, 3])
def test_read_rank_rows_equals_the_rank_slice_of_the_whole_table(small_row_groups, world_size):
    columns = ["id", "input_ids", "labels"]
    whole = read_task_table(small_row_groups, "train", "style_transfer", columns)
    parts = []
    for rank in range(world_size):
        start, stop = rank_row_range(whole.num_rows, rank, world_size)
        part = read_rank_rows(small_row_groups, "train", "style_transfer", rank, world_size, columns)
        assert part.to_pylist() == whole.slice(start, stop - start).to_pylist()
        parts.extend(part.column("id").to_pylist())
    assert parts == whole.column("id").to_pylist()  # nothing lost, nothing read twice


def test_more_ranks_than_rows_gives_empty_slices_with_the_columns(small_row_groups):
    n_rows = read_task_table(small_row_groups, "train", "style_transfer", ["id"]).num_rows
    empty = read_rank_rows(small_row_groups, "train", "style_transfer", 0, n_rows + 1, ["input_ids"])
    assert empty.num_rows == 0 and empty.column_names == ["input_ids"]


def test_the_manifest_hash_changes_with_the_manifest(small_row_groups):
    before = manifest_hash(small_row_groups)
    manifest = next(small_row_groups.rglob("manifest.json"))
    manifest.write_text(manifest.read_text().replace("}", " }", 1))
    assert manifest_hash(small_row_groups) != before
