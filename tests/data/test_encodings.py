"""Bytes that are not UTF-8: a file wholly in another encoding is refused in one line that says
what to do, and read right when its encoding is named; stray bad bytes are errors of their rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from multi_task_kobart.config import load_config
from multi_task_kobart.data.prepare import prepare_dataset
from multi_task_kobart.data.encodings import check_encoding
from multi_task_kobart.data.reading import check_row, discover_sources, read_source
from multi_task_kobart.data.validation import DataError

ROWS = [["style_transfer", "안녕하세요, 반갑습니다.", "안녕, 반가워."],
        ["qa_generation", "서울은 한국의 수도이다.", "한국의 수도는 어디인가?"],
        ["dialogue_summarization", "A: 밥 먹었어?\nB: 아직.", "B는 아직 밥을 먹지 않았다."]]


def _write_csv(path: Path, encoding: str, rows: list[list[str]] = ROWS, delimiter: str = ",") -> Path:
    with open(path, "w", encoding=encoding, newline="") as handle:
        writer = csv.writer(handle, delimiter=delimiter)
        writer.writerow(["task", "input", "target"])
        writer.writerows(rows)
    return path


def _records(path: Path, encoding: str = "utf-8") -> list[tuple]:
    (source,) = discover_sources(path)
    rows = list(read_source(source, encoding))
    assert all(not check_row(row) for row in rows)
    return [(row.line, row.record["task"], row.record["input"], row.record["target"]) for row in rows]


def test_a_cp949_csv_is_refused_in_one_line_that_names_the_fix(tmp_path):
    path = _write_csv(tmp_path / "legacy.csv", "cp949")
    with pytest.raises(DataError) as error:
        _records(path)
    assert str(error.value) == f"{path} looks like CP949 (EUC-KR): re-save it as UTF-8 or pass --encoding cp949"


@pytest.mark.parametrize("name", ["cp949", "CP949", "euc-kr"])
def test_a_cp949_csv_read_as_cp949_gives_the_rows_of_the_utf8_file(tmp_path, name):
    utf8 = _records(_write_csv(tmp_path / "utf8.csv", "utf-8"))
    assert _records(_write_csv(tmp_path / "legacy.csv", "cp949"), name) == utf8
    assert [line for line, *_ in utf8] == [2, 3, 4]  # the quoted two-line cell ends on line 5


def test_a_utf16_tsv_from_excel_is_refused_then_read_as_utf16(tmp_path):
    path = _write_csv(tmp_path / "excel.tsv", "utf-16", delimiter="\t")  # Python writes the BOM
    with pytest.raises(DataError, match="looks like UTF-16 .*--encoding utf-16"):
        _records(path)
    assert _records(path, "utf-16") == _records(_write_csv(tmp_path / "utf8.tsv", "utf-8", delimiter="\t"))


def test_one_cp949_line_among_utf8_lines_is_one_bad_row_not_a_bad_file(tmp_path):
    path = tmp_path / "mixed.jsonl"
    lines = [json.dumps(dict(zip(("task", "input", "target"), row)), ensure_ascii=False) for row in ROWS]
    path.write_bytes(b"\n".join([lines[0].encode("utf-8"), lines[1].encode("cp949"), lines[2].encode("utf-8")]))
    (source,) = discover_sources(path)
    problems = [(problem.line, problem.field, problem.reason.split(":")[0])
                for row in read_source(source) for problem in check_row(row)]
    assert problems == [(2, "input", "invalid UTF-8"), (2, "target", "invalid UTF-8")]


def test_a_byte_the_named_encoding_cannot_read_is_an_error_with_its_line(tmp_path):
    path = _write_csv(tmp_path / "legacy.csv", "cp949")
    path.write_bytes(path.read_bytes() + "style_transfer,좋아요,".encode("cp949") + b"\xff\n")
    with pytest.raises(DataError, match=rf"^{path}:6: byte 0xff is not valid cp949; is the file in "):
        _records(path, "cp949")


def test_parquet_strings_that_are_not_utf8_are_errors_of_their_rows_only(tmp_path):
    """Arrow reads string data unchecked: another writer's bad bytes must not fail the file."""
    path = tmp_path / "rows.parquet"
    inputs = pa.array([b"\xec\x95\x88", b"ab\xff", b"ok"], pa.binary()).view(pa.string())  # unchecked
    pq.write_table(pa.table({"task": ["style_transfer"] * 3, "input": inputs, "target": ["a", "b", "c"]}), path)
    (source,) = discover_sources(path)
    problems = [str(problem) for row in read_source(source) for problem in check_row(row)]
    assert problems == [f"{path}[row 1]: field 'input': invalid UTF-8: byte 0xff at character 2"]


def test_encoding_names_are_checked(tmp_path):
    assert check_encoding("UTF8") == "utf-8" and check_encoding("EUC-KR") == "euc_kr"
    for name in ("klingon", "base64"):  # unknown, and not a text encoding
        with pytest.raises(DataError, match=rf"encoding={name!r} is not a text encoding"):
            check_encoding(name)
    with pytest.raises(ValueError, match="data.encoding='klingon' is not a text encoding"):
        load_config(None, ["data.encoding=klingon"])
    assert load_config(None, ["data.encoding=cp949"]).data.encoding == "cp949"


def test_prepare_refuses_cp949_then_prepares_it_like_the_utf8_file(tmp_path, tokenizer):
    legacy = _write_csv(tmp_path / "legacy.csv", "cp949")
    with pytest.raises(DataError, match="looks like CP949"):
        prepare_dataset(legacy, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.0)
    from_cp949 = prepare_dataset(legacy, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.0,
                                 encoding="cp949")
    from_utf8 = prepare_dataset(_write_csv(tmp_path / "utf8.csv", "utf-8"), tmp_path / "out",
                                tokenizer=tokenizer, valid_fraction=0.0)
    assert from_cp949.counts == from_utf8.counts == {"train": {task: 1 for task, *_ in ROWS}}
    assert from_cp949.manifest["settings"]["encoding"] == "cp949"


def test_rejects_file_holds_an_undecodable_byte_inside_a_list(tmp_path, tokenizer):
    """The reason quotes the bad value: it must be written as ``\\udcff``, not crash the writer."""
    path = tmp_path / "rows.jsonl"
    path.write_bytes(b'{"task": "style_transfer", "input": "\xec\x95\x88\xeb\x85\x95", "target": "ok"}\n'
                     b'{"task": "style_transfer", "input": ["ab\xff"], "target": "ok"}\n')
    prepared = prepare_dataset(path, tmp_path / "out", tokenizer=tokenizer, on_error="skip", valid_fraction=0.0)
    (reject,) = [json.loads(line) for line in (prepared.path / "rejects.jsonl").read_text().splitlines()]
    assert reject["line"] == 2 and "\\udcff" in reject["errors"][0]["reason"]
    assert prepared.manifest["sources"][0]["rows"] + prepared.manifest["sources"][0]["rejected"] == 2


def test_evaluation_reads_cp949_seed_files_with_the_encoding_given(tmp_path):
    from multi_task_kobart.evaluation.examples import load_examples

    (tmp_path / "utf8").mkdir()
    (tmp_path / "legacy").mkdir()
    utf8 = load_examples(_write_csv(tmp_path / "utf8" / "test.csv", "utf-8"), split="test")
    legacy_file = _write_csv(tmp_path / "legacy" / "test.csv", "cp949")
    with pytest.raises(DataError, match="looks like CP949"):
        load_examples(legacy_file, split="test")
    legacy = load_examples(legacy_file, split="test", encoding="cp949")
    strip = lambda rows: {task: [{k: v for k, v in row.items() if k != "id"} for row in items]  # noqa: E731
                          for task, items in rows.items()}
    assert strip(legacy.by_task) == strip(utf8.by_task) and any(utf8.by_task.values())
