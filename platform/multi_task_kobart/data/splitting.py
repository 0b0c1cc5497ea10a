"""Split assignment, duplicate and leakage counting, and stable row ids.

All functions work on plain column lists (``task``, ``input``, ``target``, ``split``) so
they stay cheap on 100k+ rows and are trivially testable. Randomness comes from
``random.Random`` seeded with a string, which Python hashes with SHA-512: the same seed
gives the same split on every machine and Python version.
"""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from multi_task_kobart.tasks import TASKS


@dataclass
class SplitStats:
    """What the split/dedup pass found (all counts are rows)."""

    valid_source: dict[str, str] = field(default_factory=dict)  # task -> user | seeded | none
    duplicates: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> task -> n
    duplicates_removed: int = 0
    leakage: dict[str, dict[str, int]] = field(default_factory=dict)  # valid_vs_train/test_vs_train


def assign_valid_split(tasks: list[str], inputs: list[str], splits: list[str],
                       valid_fraction: float, seed: int) -> dict[str, str]:
    """Move a seeded ``valid_fraction`` of each task's train rows to "valid", in place.

    Only tasks without a user-given valid split are touched. Rows sharing an input move
    together, so the carved split never leaks inputs into train. Returns, per task, where
    its valid rows came from: "user", "seeded" or "none".
    """
    by_task: dict[str, dict[str, list[int]]] = defaultdict(dict)
    user_valid = {task for task, split in zip(tasks, splits) if split == "valid"}
    for index, (task, text, split) in enumerate(zip(tasks, inputs, splits)):
        if split == "train" and task not in user_valid:
            by_task[task].setdefault(text, []).append(index)
    origin = {task: "user" for task in user_valid}
    for task in sorted(by_task):
        moved = _carve(list(by_task[task].values()), valid_fraction, f"{seed}:{task}")
        for index in moved:
            splits[index] = "valid"
        origin[task] = "seeded" if moved else "none"
    return {task: origin[task] for task in TASKS if task in origin}


def _carve(groups: list[list[int]], fraction: float, seed: str) -> list[int]:
    """Row indexes of whole groups adding up to about ``fraction`` of all rows.

    At least one row when the fraction is positive, and never every group: train must keep
    something to learn from.
    """
    total = sum(len(group) for group in groups)
    wanted = max(1, round(fraction * total)) if fraction > 0 else 0
    random.Random(seed).shuffle(groups)
    moved: list[int] = []
    for group in groups[:-1]:
        if len(moved) >= wanted:
            break
        moved.extend(group)
    return moved


def count_duplicates(tasks: list[str], inputs: list[str], targets: list[str],
                     splits: list[str]) -> tuple[dict[str, dict[str, int]], list[bool]]:
    """Exact repeats of (task, input, target) within a split, and a per-row "is a repeat" mask."""
    seen: set[tuple[str, str, str, str]] = set()
    counts: dict[str, Counter] = defaultdict(Counter)
    repeat = []
    for task, text, target, split in zip(tasks, inputs, targets, splits):
        key = (split, task, text, target)
        repeat.append(key in seen)
        if key in seen:
            counts[split][task] += 1
        seen.add(key)
    return {split: dict(counter) for split, counter in counts.items()}, repeat


def count_leakage(tasks: list[str], inputs: list[str], splits: list[str]) -> dict[str, dict[str, int]]:
    """Rows of valid/test whose (task, input) also occurs in train, per task.

    Inputs are compared, not targets: a model that saw the input during training has seen
    the question, whatever answer it was given.
    """
    train_inputs = {(task, text) for task, text, split in zip(tasks, inputs, splits) if split == "train"}
    leakage: dict[str, Counter] = {"valid_vs_train": Counter(), "test_vs_train": Counter()}
    for task, text, split in zip(tasks, inputs, splits):
        if split != "train" and (task, text) in train_inputs:
            leakage[f"{split}_vs_train"][task] += 1
    return {name: dict(counter) for name, counter in leakage.items()}


def stable_ids(tasks: list[str], inputs: list[str], targets: list[str]) -> list[str]:
    """Content ids: sha1 of (task, input, target), with ``-k`` on the k-th exact repeat.

    Content-based ids survive moving or renaming the source files and re-ordering rows;
    the suffix keeps them unique when a dataset holds the same example twice.
    """
    seen: Counter = Counter()
    ids = []
    for task, text, target in zip(tasks, inputs, targets):
        digest = hashlib.sha1(f"{task}\x1f{text}\x1f{target}".encode("utf-8")).hexdigest()[:20]
        ids.append(digest if not seen[digest] else f"{digest}-{seen[digest]}")
        seen[digest] += 1
    return ids


def shuffled_order(splits: list[str], seed: int) -> list[int]:
    """Row order for writing: train rows shuffled (seeded), valid and test in source order.

    A shuffled train shard means "the first N rows" (e.g. ``Dataset.limit``) is a random
    sample rather than the head of the first file.
    """
    train = [index for index, split in enumerate(splits) if split == "train"]
    random.Random(f"{seed}:train-order").shuffle(train)
    rest = [index for index, split in enumerate(splits) if split != "train"]
    return train + rest
