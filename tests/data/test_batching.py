"""Collate and length-aware batching: correct padding, full coverage, less waste, determinism."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from multi_task_kobart.data.batching import (collate, length_grouped_batches, pad_labels, pad_sources,
                                             padding_fraction)
from multi_task_kobart.tokenizer import LABEL_PAD, PAD_ID


def test_collate_pads_ids_mask_and_labels():
    rows = [{"input_ids": [0, 10, 11, 1], "labels": [20, 1]},
            {"input_ids": [0, 12, 1], "labels": [21, 22, 23, 1]}]
    batch = collate(rows)
    assert batch["input_ids"].tolist() == [[0, 10, 11, 1], [0, 12, 1, 3]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[20, 1, -100, -100], [21, 22, 23, 1]]
    assert all(t.dtype == torch.long for t in batch.values())


def test_collate_accepts_ray_style_numpy_columns():
    columns = {"input_ids": np.array([np.array([0, 5, 1], dtype=np.int32),
                                      np.array([0, 1], dtype=np.int32)], dtype=object),
               "labels": np.array([np.array([7, 1]), np.array([1])], dtype=object)}
    batch = collate(columns)
    assert batch["input_ids"].tolist() == [[0, 5, 1], [0, 1, 3]]
    assert batch["labels"].tolist() == [[7, 1], [1, -100]]
    with pytest.raises(ValueError, match="empty batch"):
        collate([])


def test_pad_sources_masks_by_length_not_by_pad_id():
    # Row 0 holds a real token with the pad id: the mask must still count it.
    input_ids, attention_mask = pad_sources([[0, PAD_ID, 1], [0, 1]])
    assert input_ids.tolist() == [[0, PAD_ID, 1], [0, 1, PAD_ID]]
    assert attention_mask.tolist() == [[1, 1, 1], [1, 1, 0]]
    assert input_ids.dtype == attention_mask.dtype == torch.long
    ids, mask = pad_sources((np.array([5, 6], dtype=np.int32),), pad_id=9)
    assert ids.tolist() == [[5, 6]] and mask.tolist() == [[1, 1]]
    assert pad_labels([[7], [8, 1]]).tolist() == [[7, LABEL_PAD], [8, 1]]


def test_pad_sources_rejects_empty_input():
    with pytest.raises(ValueError, match="empty list of sequences"):
        pad_sources([])
    with pytest.raises(ValueError, match=r"rows \[1\] have no tokens"):
        pad_sources([[0, 1], []])
    with pytest.raises(ValueError, match="empty list of label rows"):
        pad_labels([])


def _lengths(n: int = 2000, seed: int = 0) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(rng.randint(5, 120), rng.randint(3, 60)) for _ in range(n)]


def test_length_grouped_batches_cover_everything_once_and_pad_less():
    lengths = _lengths()
    batches = length_grouped_batches(lengths, batch_size=16, seed=3)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    assert all(len(batch) <= 16 for batch in batches)
    random_batches = length_grouped_batches(lengths, batch_size=16, seed=3, window=16)
    assert padding_fraction(batches, lengths) < 0.5 * padding_fraction(random_batches, lengths)


def test_batches_are_deterministic_per_seed_and_epoch():
    lengths = _lengths(500)
    first = length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert first == length_grouped_batches(lengths, 8, seed=1, epoch=0)
    assert first != length_grouped_batches(lengths, 8, seed=1, epoch=1)
    assert first != length_grouped_batches(lengths, 8, seed=2, epoch=0)


def test_max_tokens_budget_is_respected():
    lengths = _lengths(1000) + [(400, 100)]  # one example above the budget on its own
    batches = length_grouped_batches(lengths, batch_size=64, max_tokens=1024, seed=0)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        cost = len(batch) * (max(lengths[i][0] for i in batch) + max(lengths[i][1] for i in batch))
        assert cost <= 1024 or len(batch) == 1
