"""Padding collate and length-aware batching for pre-tokenized rows.

The collate only pads ids that preparation already produced (no tokenization here, so it is
cheap in any thread or process); :func:`pad_sources` is the one padding + attention-mask helper
that evaluation, the MLflow pyfunc and Serve use as well. Length-aware batching sorts examples by length inside a
shuffled window before cutting batches: neighbours in a batch then have similar lengths and
little padding is computed, while the window and a final shuffle of batch order keep the
data order random. Everything is deterministic given ``(seed, epoch)``, so every rank and a
resumed run see the same batches.
"""

from __future__ import annotations

import random
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch

from multi_task_kobart.tokenizer import LABEL_PAD, PAD_ID

#: A batching window holds this many batches' worth of examples by default.
DEFAULT_WINDOW_BATCHES = 50


def collate(batch: Sequence[Mapping[str, Any]] | Mapping[str, Sequence[Any]], *,
            pad_id: int = PAD_ID, label_pad_id: int = LABEL_PAD) -> dict[str, torch.Tensor]:
    """Rows (list of dicts) or columns (dict of lists / numpy object arrays, as Ray's
    ``iter_batches`` yields) -> ``input_ids``, ``attention_mask``, ``labels`` LongTensors."""
    if isinstance(batch, Mapping):
        sources, labels = list(batch["input_ids"]), list(batch["labels"])
    else:
        sources = [row["input_ids"] for row in batch]
        labels = [row["labels"] for row in batch]
    if not sources:
        raise ValueError("cannot collate an empty batch.")
    input_ids, attention_mask = pad_sources(sources, pad_id)
    return {"input_ids": input_ids, "attention_mask": attention_mask,
            "labels": pad_labels(labels, label_pad_id)}


def pad_sources(sequences: Sequence[Sequence[int]], pad_id: int = PAD_ID) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-pad encoder inputs: ``(input_ids, attention_mask)``, both (rows, longest) LongTensors.

    The one padding helper for training batches, evaluation, the MLflow pyfunc and Serve. The mask
    comes from the row lengths, not from ``ids != pad_id``: a row from elsewhere may hold a real
    token with the pad id, and a comparison would silently hide it.
    """
    if len(sequences) == 0:
        raise ValueError("cannot pad an empty list of sequences; pass at least one row of token ids.")
    empty = [index for index, seq in enumerate(sequences) if len(seq) == 0]
    if empty:
        raise ValueError(f"rows {empty} have no tokens; every encoder input needs at least one "
                         "(encode_sources gives <s> ... </s>).")
    input_ids = _pad(sequences, pad_id)
    lengths = torch.tensor([len(seq) for seq in sequences])
    attention_mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return input_ids, attention_mask


def pad_labels(sequences: Sequence[Sequence[int]], label_pad_id: int = LABEL_PAD) -> torch.Tensor:
    """Right-pad label rows with ``label_pad_id`` (ignored by ``token_cross_entropy``)."""
    if len(sequences) == 0:
        raise ValueError("cannot pad an empty list of label rows.")
    return _pad(sequences, label_pad_id)


def _pad(sequences: Sequence[Sequence[int]], value: int) -> torch.Tensor:
    width = max(len(seq) for seq in sequences)
    out = np.full((len(sequences), width), value, dtype=np.int64)
    for row, seq in enumerate(sequences):
        out[row, : len(seq)] = np.asarray(seq, dtype=np.int64)
    return torch.from_numpy(out)


def _cut_batches(order: list[int], lengths: Sequence[tuple[int, int]], batch_size: int,
                 max_tokens: int | None) -> list[list[int]]:
    """Sort ``order`` by length and cut it greedily into batches.

    A batch's cost is rows x (longest source + longest target), i.e. padded tokens; an
    example over ``max_tokens`` on its own still forms a batch rather than being dropped.
    """
    ranked = sorted(order, key=lambda i: (lengths[i][0], lengths[i][1]))
    batches: list[list[int]] = []
    current: list[int] = []
    longest_source = longest_target = 0
    for index in ranked:
        source, target = lengths[index]
        wider_source, wider_target = max(longest_source, source), max(longest_target, target)
        over_budget = max_tokens is not None and (len(current) + 1) * (wider_source + wider_target) > max_tokens
        if current and (len(current) == batch_size or over_budget):
            batches.append(current)
            current, wider_source, wider_target = [], source, target
        current.append(index)
        longest_source, longest_target = wider_source, wider_target
    if current:
        batches.append(current)
    return batches


def length_grouped_batches(lengths: Sequence[tuple[int, int]] | Sequence[int], batch_size: int, *,
                           max_tokens: int | None = None, seed: int = 0, epoch: int = 0,
                           window: int | None = None) -> list[list[int]]:
    """Index batches over all examples: shuffle, sort within windows, cut, shuffle batches.

    ``lengths``: per example (source_len, target_len), or one int (a source length).
    ``window``: examples sorted together (default ``batch_size * 50``); a window as large
    as the data gives the least padding, a window of one batch gives plain random batches.
    """
    _check_batching(batch_size, max_tokens)
    pairs = [(n, 0) if isinstance(n, (int, np.integer)) else (int(n[0]), int(n[1])) for n in lengths]
    rng = random.Random(f"{seed}:{epoch}")
    order = list(range(len(pairs)))
    rng.shuffle(order)
    window = window or batch_size * DEFAULT_WINDOW_BATCHES
    batches: list[list[int]] = []
    for start in range(0, len(order), window):
        batches.extend(_cut_batches(order[start:start + window], pairs, batch_size, max_tokens))
    rng.shuffle(batches)
    return batches


def _check_batching(batch_size: int, max_tokens: int | None) -> None:
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size!r} must be >= 1.")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens={max_tokens!r} must be >= 1 (or None for no budget).")


def padding_fraction(batches: Iterable[Sequence[int]], lengths: Sequence[tuple[int, int]]) -> float:
    """Share of padded positions (source + target) over ``batches``: how much compute is waste."""
    padded = real = 0
    for batch in batches:
        source = max(lengths[i][0] for i in batch)
        target = max(lengths[i][1] for i in batch)
        padded += len(batch) * (source + target)
        real += sum(lengths[i][0] + lengths[i][1] for i in batch)
    return 1.0 - real / padded if padded else 0.0
