"""Fixtures for the data-pipeline tests: a tokenizer and tiny seed files written to tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from multi_task_kobart.tasks import TASKS


@pytest.fixture(scope="session")
def tokenizer(request):
    """The bundled tokenizer when it has been built, else KoBART's from ../shared (else skip)."""
    from multi_task_kobart.tokenizer import BUNDLED_TOKENIZER_DIR, load_tokenizer

    if (BUNDLED_TOKENIZER_DIR / "tokenizer.json").is_file():
        return load_tokenizer()
    return load_tokenizer(request.getfixturevalue("kobart_tokenizer_json"))


def _make_rows(per_task: int = 5, prefix: str = "") -> list[dict]:
    """Distinct, valid Korean rows for every task (QA rows carry two gold answers)."""
    rows = []
    for task in TASKS:
        for i in range(per_task):
            row = {"task": task, "input": f"{prefix}{task} 입력 문장 {i} 안녕하세요",
                   "target": f"{prefix}출력 {i} 감사합니다."}
            if task == "qa_generation":
                row["answers"] = [f"답 {i}", f"정답 {i}"]
            rows.append(row)
    return rows


def _write_jsonl(path: Path, rows: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def make_rows():
    """``make_rows(per_task=5, prefix="")`` -> valid rows for every task."""
    return _make_rows


@pytest.fixture
def write_jsonl():
    """``write_jsonl(path, rows)`` -> path (one JSON object per line, UTF-8)."""
    return _write_jsonl
