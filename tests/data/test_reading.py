"""Readers and validation: every format reads every row; bad rows are named by file:line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multi_task_kobart.data.prepare import prepare_dataset
from multi_task_kobart.data.reading import (check_row, discover_sources, read_source,
                                            split_for_name)
from multi_task_kobart.data.validation import DataValidationError
from multi_task_kobart.tasks import TASKS


def _read_all(path: Path) -> tuple[list[dict], list]:
    """Valid records and all errors of every source under ``path``."""
    records, errors = [], []
    for source in discover_sources(path):
        for row in read_source(source):
            problems = check_row(row)
            errors.extend(problems)
            if not problems:
                records.append(row.record)
    return records, errors


def _write_format(path: Path, rows: list[dict], fmt: str) -> Path:
    if fmt == "json":
        path.write_text(json.dumps(rows, ensure_ascii=False, indent=2), encoding="utf-8")
    elif fmt in ("csv", "tsv"):
        with open(path, "w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, delimiter="\t" if fmt == "tsv" else ",")
            writer.writerow(["task", "input", "target", "answers", "note"])
            for r in rows:
                answers = json.dumps(r["answers"], ensure_ascii=False) if "answers" in r else ""
                writer.writerow([r["task"], r["input"], r["target"], answers, "extra column"])
    elif fmt == "parquet":
        pq.write_table(pa.Table.from_pylist([{**r, "answers": r.get("answers")} for r in rows]), path)
    return path


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_each_format_reads_every_row_unchanged(tmp_path, fmt, make_rows, write_jsonl):
    rows = make_rows(per_task=3)
    rows[0]["input"] = "여러 줄\n입력, \"따옴표\" 포함"  # newline, comma and quotes survive CSV
    path = tmp_path / f"data.{fmt}"
    write_jsonl(path, rows) if fmt == "jsonl" else _write_format(path, rows, fmt)
    records, errors = _read_all(path)
    assert errors == []
    assert len(records) == len(rows)
    for got, want in zip(records, rows):
        assert (got["task"], got["input"], got["target"]) == (want["task"], want["input"], want["target"])
        assert got.get("answers") == want.get("answers")


def test_realdata_files_read_without_loss(realdata_dir):
    for path in sorted(realdata_dir.glob("*.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        records, errors = _read_all(path)
        assert errors == [], f"{path.name}: {errors[:3]}"
        assert len(records) == len(lines)
        assert {r["task"] for r in records} == {path.stem}
        if path.stem == "qa_generation":
            assert all(isinstance(r["answers"], list) and r["answers"] for r in records)


def test_realdata_prepares_every_row(realdata_dir, tokenizer, tmp_path):
    total = sum(1 for p in realdata_dir.glob("*.jsonl") for line in p.open(encoding="utf-8") if line.strip())
    prepared = prepare_dataset(realdata_dir, tmp_path / "out", tokenizer=tokenizer)
    counts = prepared.manifest["counts"]
    assert sum(n for split in counts.values() for n in split.values()) == total
    assert prepared.manifest["rejects"]["rows"] == 0
    assert set(counts["train"]) == set(TASKS)


BAD_JSONL = [
    b'{"task": "style_transfer", "input": "\xec\x95\x88\xeb\x85\x95", "target": "\xec\x95\x88\xeb\x85\x95\xed\x95\x98\xec\x84\xb8\xec\x9a\x94."}',
    b'{"task": "style_transfer", "input": "broken", "target": "x"',  # 2: malformed JSON
    b'{"task": "translation", "input": "a", "target": "b"}',  # 3: unknown task
    b'',  # 4: blank line (not a row)
    b'{"task": "qa_generation", "input": "q", "target": "   "}',  # 5: empty target
    b'{"task": "role_generation", "input": 42, "target": ["x"]}',  # 6: wrong types (2 fields)
    b'{"task": "style_transfer", "input": "ab\xff", "target": "ok"}',  # 7: invalid UTF-8 byte
    b'{"task": "dialogue_summarization", "input": "A: hi", "target": "hello"}',
]


def _bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "in" / "bad.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"\n".join(BAD_JSONL) + b"\n")
    return path


def test_bad_jsonl_errors_name_exact_file_line_and_field(tmp_path, tokenizer):
    path = _bad_file(tmp_path)
    with pytest.raises(DataValidationError) as info:
        prepare_dataset(path, tmp_path / "out", tokenizer=tokenizer)
    found = {(e.location, e.field) for e in info.value.errors}
    assert found == {(f"{path}:2", "<json>"), (f"{path}:3", "task"), (f"{path}:5", "target"),
                     (f"{path}:6", "input"), (f"{path}:6", "target"), (f"{path}:7", "input")}
    message = str(info.value)
    assert "6 problem(s) in 5 row(s) across 1 file(s)" in message
    assert f"{path}:3: field 'task': unknown task: 'translation'" in message
    assert f"{path}:7: field 'input': invalid UTF-8: byte 0xff" in message
    assert f"{path}:6: field 'input': wrong type: expected a string, got int 42" in message
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").glob("*/manifest.json"))


def test_skip_rejects_exactly_the_bad_rows(tmp_path, tokenizer):
    path = _bad_file(tmp_path)
    prepared = prepare_dataset(path, tmp_path / "out", tokenizer=tokenizer,
                               on_error="skip", valid_fraction=0.0)
    rejects = [json.loads(line) for line in (prepared.path / "rejects.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rejects] == [2, 3, 5, 6, 7]
    assert all(r["file"] == str(path) for r in rejects)
    assert prepared.manifest["rejects"]["rows"] == 5
    assert prepared.manifest["rejects"]["problems"] == 6
    assert prepared.manifest["counts"] == {"train": {"style_transfer": 1, "dialogue_summarization": 1}}
    assert prepared.manifest["sources"][0]["rows"] == 2
    assert prepared.manifest["sources"][0]["rejected"] == 5
    assert "\\xff" in rejects[-1]["raw"]  # the undecodable byte is visible, not dropped


def test_csv_errors_use_file_lines_even_after_multiline_cells(tmp_path):
    path = tmp_path / "d.csv"
    path.write_text('task,input,target\n'
                    'style_transfer,"두 줄\n입력",좋아요\n'  # lines 2-3
                    'style_transfer,입력,\n'  # line 4: empty target
                    'qa_generation,질문,답,"not json"\n', encoding="utf-8")  # 5: extra cell
    records, errors = _read_all(path)
    assert len(records) == 1
    assert [(e.location, e.field) for e in errors] == [(f"{path}:4", "target"), (f"{path}:5", "<row>")]


def test_json_list_errors_point_at_the_element_line(tmp_path):
    path = tmp_path / "d.json"
    path.write_text('[\n {"task": "style_transfer", "input": "a", "target": "b"},\n'
                    ' {"task": "style_transfer",\n  "input": "", "target": "b"}\n]', encoding="utf-8")
    records, errors = _read_all(path)
    assert len(records) == 1 and [e.location for e in errors] == [f"{path}:3"]
    path.write_text('[\n {"task": "style_transfer", "input": "a", "target": "b"},\n {"task": }\n]')
    records, errors = _read_all(path)
    assert len(records) == 1
    assert errors[0].location == f"{path}:3" and "rest of the file could not be read" in errors[0].reason


def test_parquet_errors_use_row_index(tmp_path):
    path = tmp_path / "d.parquet"
    pq.write_table(pa.Table.from_pylist([
        {"task": "style_transfer", "input": "a", "target": "b"},
        {"task": "style_transfer", "input": "a", "target": None}]), path)
    records, errors = _read_all(path)
    assert len(records) == 1
    assert [(e.location, e.field) for e in errors] == [(f"{path}[row 1]", "target")]


def test_split_names_from_files_and_folders(tmp_path, make_rows, write_jsonl):
    assert split_for_name("train.jsonl") == "train"
    assert split_for_name("style_transfer.jsonl") == "train"
    assert split_for_name("qa_dev.csv") == "valid"
    assert split_for_name("validation/part1.parquet") == "valid"
    assert split_for_name("test.jsonl") == "test"
    assert split_for_name("held-out/x.jsonl") == "test"
    write_jsonl(tmp_path / "train" / "a.jsonl", make_rows(1))
    write_jsonl(tmp_path / "dev.jsonl", make_rows(1, "v"))
    splits = {s.name: s.split for s in discover_sources(tmp_path)}
    assert splits == {"dev.jsonl": "valid", "train/a.jsonl": "train"}


def test_missing_inputs_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither a file nor a folder"):
        discover_sources(tmp_path / "nope.jsonl")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no data files"):
        discover_sources(tmp_path / "empty")


def test_a_name_that_is_not_a_path_is_tried_on_the_hub(tmp_path, tokenizer, monkeypatch):
    monkeypatch.chdir(tmp_path)  # so the name cannot match a local folder by accident
    with pytest.raises(ValueError, match="not a local file or folder, and loading it as a hub "
                                         "dataset failed"):
        prepare_dataset("no-such-owner/no-such-dataset", tmp_path / "out", tokenizer=tokenizer)
