"""Per-task, never-ending streams of micro-batches over one rank's in-memory rows.

Each rank materialises its shard of every task once (token ids only: a few MB even for
100k rows), then cycles through length-aware batches epoch after epoch, reshuffled per
``(seed, epoch)``. A stream never runs dry, so no rank can stop early because its shard of
one task is smaller: every rank runs exactly ``max_steps`` optimizer steps. The position
(epoch, batch index) is part of the checkpoint, so a resumed run picks up the next batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

#: ``(per-row (source_len, target_len), seed, epoch) -> batches of row indices``
BatchPlanner = Callable[[Sequence[tuple[int, int]], int, int], list[list[int]]]
#: ``(rows) -> dict of padded tensors`` with input_ids, attention_mask, labels
Collate = Callable[[list[dict[str, Any]]], dict[str, torch.Tensor]]


@dataclass
class TaskRows:
    """One task's rows on this rank: token-id lists, as read from the Parquet shards."""

    task: str
    input_ids: list[list[int]]
    labels: list[list[int]]

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.labels):
            raise ValueError(f"task {self.task!r}: {len(self.input_ids)} inputs but "
                             f"{len(self.labels)} labels.")

    def __len__(self) -> int:
        return len(self.input_ids)

    def lengths(self) -> list[tuple[int, int]]:
        return [(len(source), len(target)) for source, target in zip(self.input_ids, self.labels)]

    def rows(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        return [{"input_ids": self.input_ids[i], "labels": self.labels[i]} for i in indices]


class BatchStream:
    """Cycling batches of one task: ``next_batch()`` always returns a batch."""

    def __init__(self, rows: TaskRows, planner: BatchPlanner, collate: Collate, seed: int) -> None:
        if len(rows) == 0:
            raise ValueError(f"task {rows.task!r} has no rows on this rank; every rank needs at "
                             "least one training row per task (use fewer workers or more data).")
        self.rows, self.planner, self.collate, self.seed = rows, planner, collate, seed
        self._lengths = rows.lengths()
        self.epoch, self.position = 0, 0
        self._plan = self._plan_epoch(0)

    def _plan_epoch(self, epoch: int) -> list[list[int]]:
        plan = self.planner(self._lengths, self.seed, epoch)
        if not plan:
            raise ValueError(f"task {self.rows.task!r}: the batch planner returned no batches.")
        return plan

    def next_indices(self) -> list[int]:
        if self.position >= len(self._plan):
            self.epoch, self.position = self.epoch + 1, 0
            self._plan = self._plan_epoch(self.epoch)
        indices = self._plan[self.position]
        self.position += 1
        return indices

    def next_batch(self) -> dict[str, torch.Tensor]:
        return self.collate(self.rows.rows(self.next_indices()))

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch, self.position = int(state["epoch"]), int(state["position"])
        self._plan = self._plan_epoch(self.epoch)


def fixed_batches(rows: TaskRows, planner: BatchPlanner, collate: Collate, seed: int,
                  limit: int | None) -> list[dict[str, torch.Tensor]]:
    """The first ``limit`` batches (all when None) of one pass, for validation."""
    if len(rows) == 0:
        return []
    plan = planner(rows.lengths(), seed, 0)
    return [collate(rows.rows(indices)) for indices in plan[:limit]]


def move_to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
