"""What the benchmarks run on: ``../shared`` when present (the real KoBART tokenizer and Korean
rows), else the bundled tokenizer and generated corpus. One place, so every benchmark compares
its sides on the same kind of input and says which it used."""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTK_SHARED_DIR", ROOT.parent / "shared"))
KOBART_TOKENIZER = SHARED / "kobart-tokenizer" / "tokenizer.json"


def kobart_tokenizer_path() -> str | None:
    """The real KoBART tokenizer.json, or None (then ``load_tokenizer`` gives the bundled one)."""
    return str(KOBART_TOKENIZER) if KOBART_TOKENIZER.is_file() else None


def seed_rows(seed: int) -> tuple[list[dict[str, Any]], str]:
    """All ``{task, input, target}`` rows of ``../shared/realdata`` (else the bundled corpus's
    train split), shuffled by ``seed``, and the name of their source."""
    from multi_task_kobart.tasks import TASKS

    files = [SHARED / "realdata" / f"{task}.jsonl" for task in TASKS]
    if all(path.is_file() for path in files):
        rows = [json.loads(line) for path in files for line in path.read_text().splitlines() if line]
        source = "../shared/realdata"
    else:
        from multi_task_kobart.data.corpus import generate_corpus

        rows, source = generate_corpus(seed=seed)["train"], "bundled corpus"
    random.Random(seed).shuffle(rows)
    return rows, source
