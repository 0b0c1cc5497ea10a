"""The bundled Korean multi-task corpus: deterministic, template-generated, with a held-out split.

A sub-package of its own, so the data pipeline's files (reading, validation, shards, loading,
sampling) stand apart from the ~1,250 lines of Korean templates:

* ``generate`` samples every task's candidates into ``train``/``test`` and writes JSONL;
* ``style``, ``dialogue``, ``role`` and ``qa`` enumerate one task's candidate rows each;
* ``korean`` holds the grammar they share (particles, verb endings, Hangul arithmetic).

``python -m multi_task_kobart.data.corpus OUT_DIR [--seed N]`` writes the corpus as JSONL.
"""

from __future__ import annotations

from multi_task_kobart.data.corpus.generate import (
    SPLITS, TEST_FRACTION, TEST_PER_TASK, TRAIN_PER_TASK, generate_corpus, is_held_out,
    task_candidates, write_corpus,
)

__all__ = ["SPLITS", "TEST_FRACTION", "TEST_PER_TASK", "TRAIN_PER_TASK", "generate_corpus",
           "is_held_out", "task_candidates", "write_corpus"]
