"""Property tests of the readers: whatever bytes a file holds, every row that goes in comes out.

A row (a JSONL line, a JSON list item, a CSV record, a Parquet row) comes out either as a
valid record or with errors that name its file and line; a file that cannot be read at all
is one file-level error (a row with no record), or, for a file wholly in another encoding,
one ``DataError`` that names the file. Nothing else: no parser exception, no row dropped.
Every generated row knows by construction whether it is valid, so the tests also check that
the validator accepts exactly the valid ones. Inputs mix broken JSON, wrong types, huge
strings and numbers, deep nesting, unknown tasks, empty fields, undecodable bytes, CP949
lines, byte-order marks and CRLF line ends. Seeded (``derandomize``), so CI sees the same cases.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from multi_task_kobart.data.reading import RawRow, check_row, discover_sources, read_source
from multi_task_kobart.data.validation import DataError
from multi_task_kobart.tasks import TASKS

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow, HealthCheck.data_too_large])
BAD_BYTE = "\udcff"  # written with surrogateescape: the byte 0xff, which is never UTF-8
REQUIRED = ("task", "input", "target")

# (value, valid) pairs: whether a field holding the value passes validation.
good_text = st.text(min_size=1, max_size=12).filter(str.strip)
# Longer than the csv module's default limit of 131072 characters a cell.
huge_text = st.integers(131_073, 132_000).map(lambda n: "가" * n)
blank_text = st.sampled_from(["", " ", "\t", "\u3000", "\n"])
valid_text = good_text.map(lambda t: (t, True))
# Branches are drawn evenly: the repeats make most fields good and huge ones rare (they are slow).
text_field = st.one_of(valid_text, valid_text, valid_text, valid_text,
                       huge_text.map(lambda t: (t, True)), blank_text.map(lambda t: (t, False)),
                       good_text.map(lambda t: (t + BAD_BYTE, False)))
task_field = st.one_of(st.sampled_from(TASKS).map(lambda t: (t, True)),
                       good_text.filter(lambda t: t not in TASKS).map(lambda t: (t, False)),
                       blank_text.map(lambda t: (t, False)))
wrong_type = st.one_of(st.integers(), st.floats(allow_nan=False), st.booleans(), st.none(),
                       st.lists(st.integers(), max_size=2),
                       st.dictionaries(good_text, st.integers(), max_size=2))
answers_list = st.lists(good_text, max_size=3)
bad_answers_list = st.one_of(answers_list.map(lambda a: [*a, " "]), answers_list.map(lambda a: [*a, 1]),
                             answers_list.map(lambda a: [*a, "x" + BAD_BYTE]))
MISSING = object()


@st.composite
def json_records(draw) -> tuple[dict, bool]:
    """A record for JSON formats: any field may be missing, of a wrong type, blank or bad."""
    record, valid = {}, True
    for name in REQUIRED:
        value, ok = draw(st.one_of(task_field if name == "task" else text_field,
                                   wrong_type.map(lambda v: (v, False)), st.just((MISSING, False))))
        if value is not MISSING:
            record[name] = value
        valid &= ok
    answers, ok = draw(st.one_of(st.just((MISSING, True)), st.just((None, True)),
                                 answers_list.map(lambda a: (a, True)),
                                 bad_answers_list.map(lambda a: (a, False)),
                                 good_text.map(lambda a: (a, False))))
    if answers is not MISSING:
        record["answers"] = answers
    return record, valid and ok


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _read(path: Path, encoding: str = "utf-8") -> list[RawRow] | DataError:
    (source,) = discover_sources(path)
    try:
        return list(read_source(source, encoding))
    except DataError as error:
        return error


def _check(path: Path, data: bytes, result: list[RawRow] | DataError,
           expected: list[tuple[int, bool]], file_error_at_end: bool = False) -> None:
    """``result`` holds exactly the ``expected`` (line, valid) rows (then one file-level error,
    if ``file_error_at_end``), each error naming the file and the row's line; or the file is
    not UTF-8 and was refused as a whole, in a message that names it."""
    if isinstance(result, DataError):
        assert str(path) in str(result) and "looks like" in str(result)
        assert not _is_utf8(data), "a UTF-8 file is never refused as a whole"
        return
    rows = result[:-1] if file_error_at_end else result
    assert [(row.line, not check_row(row)) for row in rows] == expected
    if file_error_at_end:
        assert result[-1].record is None and "could not be read" in result[-1].errors[0].reason
    for row in result:
        for problem in check_row(row):
            assert (problem.file, problem.line) == (str(path), row.line)
            str(problem).encode("utf-8")  # printable and writable to the rejects file


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --- JSONL ---------------------------------------------------------------------------

@st.composite
def jsonl_lines(draw) -> tuple[bytes, bool | None]:
    """One line's bytes and whether it is a valid row (None: blank, not a row)."""
    kind = draw(st.sampled_from(["record", "record", "broken", "not_object", "huge_number",
                                 "deep", "random", "cp949", "blank"]))
    if kind == "record":
        record, valid = draw(json_records())
        return _encode(json.dumps(record, ensure_ascii=draw(st.booleans()))), valid
    if kind == "broken":  # a valid record cut short
        text = json.dumps({"task": TASKS[0], "input": draw(good_text), "target": draw(good_text)})
        return _encode(text[:draw(st.integers(1, len(text) - 1))]), False
    if kind == "not_object":
        return _encode(json.dumps(draw(st.one_of(wrong_type, good_text)))), False
    if kind == "huge_number":  # more digits than Python converts
        return b'{"task": "style_transfer", "input": ' + b"7" * 5000 + b', "target": "x"}', False
    if kind == "deep":  # deeper than the recursion limit
        return b"[" * 5000 + b"]" * 5000, False
    if kind == "cp949":  # one row saved by another tool, among UTF-8 rows
        text = json.dumps({"task": TASKS[0], "input": "안녕 " + draw(st.text("abc ", max_size=5)),
                           "target": "ok"}, ensure_ascii=False)
        return text.encode("cp949"), False
    if kind == "random":
        line = draw(st.binary(max_size=40)).replace(b"\n", b"")
        return line, (None if not line.strip(b" \t\r") else False)
    return draw(st.sampled_from([b"", b"  ", b"\t", b"\r"])), None


@PROPERTY
@given(lines=st.lists(jsonl_lines(), max_size=8), newline=st.sampled_from([b"\n", b"\r\n"]),
       bom=st.booleans(), final_newline=st.booleans())
def test_jsonl_every_line_is_a_record_or_an_error(tmp_path, lines, newline, bom, final_newline):
    data = (b"\xef\xbb\xbf" if bom else b"") + newline.join(line for line, _ in lines) \
        + (newline if final_newline else b"")
    path = tmp_path / "rows.jsonl"
    path.write_bytes(data)
    expected = [(number, valid) for number, (_, valid) in enumerate(lines, start=1) if valid is not None]
    _check(path, data, _read(path), expected)


# --- JSON list -----------------------------------------------------------------------

@st.composite
def json_elements(draw) -> tuple[str, bool, bool]:
    """One list item's text, whether it is a valid row, and whether it breaks the file
    (Python cannot read it, so nothing after it can be read either)."""
    kind = draw(st.sampled_from(["record", "record", "record", "junk", "huge_number", "deep"]))
    if kind == "record":
        record, valid = draw(json_records())
        indent = draw(st.sampled_from([None, 1]))
        return json.dumps(record, ensure_ascii=draw(st.booleans()), indent=indent), valid, False
    if kind == "junk":  # not an object; no bare numbers, so a cut never leaves a shorter valid one
        value = draw(st.one_of(st.none(), st.booleans(), good_text, st.lists(st.integers(), max_size=2)))
        return json.dumps(value), False, False
    if kind == "huge_number":  # inside an object, so that a cut never leaves a shorter number
        return '{"task": ' + "9" * 5000 + "}", False, True
    return "[" * 5000 + "]" * 5000, False, True


@PROPERTY
@given(elements=st.lists(json_elements(), max_size=6),
       separator=st.sampled_from([",", ",\n", ", \r\n  "]),
       ending=st.sampled_from(["whole", "cut", "trailing"]), data=st.data())
def test_json_list_every_item_is_a_record_or_the_file_error_says_where_reading_stopped(
        tmp_path, elements, separator, ending, data):
    text, starts = "[\n", []
    for index, (element, _, _) in enumerate(elements):
        text += separator if index else ""
        starts.append((len(text), len(text) + len(element)))
        text += element
    text += "\n]"
    if ending == "cut":
        text = text[:data.draw(st.integers(0, len(text) - 1))]
    elif ending == "trailing":  # a second record after the list must not vanish unread
        text += '\n{"task": "style_transfer", "input": "a", "target": "b"}'
    expected, broken = [], ending != "whole"
    for (start, end), (_, valid, breaks) in zip(starts, elements):
        if breaks or end > len(text):
            broken = True
            break
        expected.append((text.count("\n", 0, start) + 1, valid))
    path = tmp_path / "rows.json"
    path.write_bytes(_encode(text))
    _check(path, _encode(text), _read(path), expected, file_error_at_end=broken)


# --- CSV / TSV -----------------------------------------------------------------------

# CSV has no lists: answers travel as a JSON list in one cell ("" = none).
answers_cell = st.one_of(
    st.just(("", True)), answers_list.map(lambda a: (json.dumps(a, ensure_ascii=False), True)),
    bad_answers_list.map(lambda a: (json.dumps(a, ensure_ascii=False), False)),
    st.sampled_from(["not json", '"one string"', "9" * 5000, "[" * 5000]).map(lambda c: (c, False)))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # what the csv module counts as a line end


@st.composite
def csv_files(draw, delimiter: str) -> tuple[str, list[tuple[int, bool]]]:
    """A CSV/TSV text with a header (columns in any order, maybe answers and a spare column)
    and the (line, valid) of every record in it."""
    columns = list(REQUIRED) + [c for c in ("answers", "note") if draw(st.booleans())]
    columns = draw(st.permutations(columns))
    handle, newline = io.StringIO(), draw(st.sampled_from(["\n", "\r\n"]))
    # Under "\n" line ends Python's writer leaves a cell's lone "\r" unquoted, which no reader
    # can tell from a line end: quote every cell there.
    writer = csv.writer(handle, delimiter=delimiter, lineterminator=newline,
                        quoting=csv.QUOTE_MINIMAL if newline == "\r\n" else csv.QUOTE_ALL)
    writer.writerow(columns)
    expected = []
    for _ in range(draw(st.integers(0, 6))):
        cells = {"task": task_field, "answers": answers_cell, "note": valid_text}
        drawn = {column: draw(cells.get(column, text_field)) for column in columns}
        row, valid = [drawn[c][0] for c in columns], all(ok for _, ok in drawn.values())
        shape = draw(st.sampled_from(["whole", "whole", "short", "long"]))
        if shape == "short":  # the last cell is missing: fine unless its column is required
            row, valid = row[:-1], all(ok for c, (_, ok) in drawn.items() if c != columns[-1]) \
                and columns[-1] not in REQUIRED
        elif shape == "long":
            row, valid = row + ["extra"], False
        start = handle.tell()
        writer.writerow(row)
        expected.append((len(_LINE_BREAK.findall(handle.getvalue(), 0, start)) + 1, valid))
    return handle.getvalue(), expected


@PROPERTY
@given(fmt=st.sampled_from(["csv", "tsv"]), bom=st.booleans(), data=st.data())
def test_csv_every_record_is_a_row_or_an_error(tmp_path, fmt, bom, data):
    text, expected = data.draw(csv_files("," if fmt == "csv" else "\t"))
    path = tmp_path / f"rows.{fmt}"
    raw = (b"\xef\xbb\xbf" if bom else b"") + _encode(text)
    path.write_bytes(raw)
    _check(path, raw, _read(path), expected)


def test_csv_without_a_required_column_is_one_file_error(tmp_path):
    path = tmp_path / "rows.csv"
    path.write_text("task,input\nstyle_transfer,안녕\nstyle_transfer,잘 가\n", encoding="utf-8")
    (row,) = _read(path)
    assert [(e.location, e.field) for e in check_row(row)] == [(f"{path}:1", "<row>")]
    assert "missing columns: ['target']" in check_row(row)[0].reason


# --- Parquet -------------------------------------------------------------------------

@st.composite
def parquet_columns(draw, name: str, rows: int) -> tuple[pa.Array, list[bool]]:
    """A column of ``rows`` cells and each cell's validity; the column's type may be wrong.
    Parquet strings are UTF-8 by definition, so they hold no undecodable byte."""
    if draw(st.integers(0, 4)) == 0:  # a whole column of the wrong type
        values = draw(st.lists(st.integers(-2**63, 2**63 - 1), min_size=rows, max_size=rows))
        return pa.array(values, pa.int64()), [False] * rows
    field = task_field if name == "task" else st.one_of(valid_text, blank_text.map(lambda t: (t, False)))
    cells = draw(st.lists(st.one_of(field, st.just((None, False))), min_size=rows, max_size=rows))
    return pa.array([value for value, _ in cells], pa.string()), [ok for _, ok in cells]


@PROPERTY
@given(rows=st.integers(0, 8), answers=st.booleans(), data=st.data())
def test_parquet_every_row_is_a_record_or_an_error(tmp_path, rows, answers, data):
    columns, valid = {}, [True] * rows
    for name in REQUIRED:
        columns[name], ok = data.draw(parquet_columns(name, rows))
        valid = [a and b for a, b in zip(valid, ok)]
    if answers:
        cells = data.draw(st.lists(st.one_of(st.just((None, True)), answers_list.map(lambda a: (a, True)),
                                             answers_list.map(lambda a: ([*a, " "], False))),
                                   min_size=rows, max_size=rows))
        columns["answers"] = pa.array([a for a, _ in cells], pa.list_(pa.string()))
        valid = [a and ok for a, (_, ok) in zip(valid, cells)]
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table(columns), path, row_group_size=3)
    expected = [(index, ok) for index, ok in enumerate(valid)]
    _check(path, path.read_bytes(), _read(path), expected)


@PROPERTY
@given(flips=st.lists(st.integers(0, 10**6), min_size=1, max_size=20))
def test_parquet_damaged_inside_reads_up_to_the_damage_then_says_so(tmp_path, flips):
    path = tmp_path / "rows.parquet"
    rows = 1200
    pq.write_table(pa.table({"task": ["style_transfer"] * rows, "input": [f"입력 {i}" for i in range(rows)],
                             "target": ["출력"] * rows}), path, row_group_size=300)
    data = bytearray(path.read_bytes())
    for flip in flips:  # the data pages; the footer that indexes them stays intact
        data[100 + flip % (len(data) // 2)] ^= 0xFF
    path.write_bytes(bytes(data))
    result = _read(path)
    records = [row for row in result if row.record is not None]
    assert [row.line for row in records] == list(range(len(records)))
    if len(records) < rows:  # whatever was lost is announced, at the row where reading stopped
        assert len(result) == len(records) + 1 and result[-1].line == len(records)
        assert "could not be read" in result[-1].errors[0].reason


# --- any bytes at all ----------------------------------------------------------------

@PROPERTY
@given(fmt=st.sampled_from(["jsonl", "json", "csv", "tsv", "parquet"]), data=st.binary(max_size=300),
       cut_parquet=st.booleans())
def test_random_bytes_in_any_format_end_in_rows_errors_or_one_file_error(tmp_path, fmt, data, cut_parquet):
    path = tmp_path / f"random.{fmt}"
    if fmt == "parquet" and cut_parquet:  # a real Parquet file, cut short by a failed copy
        pq.write_table(pa.table({"task": ["style_transfer"], "input": ["a"], "target": ["b"]}), path)
        data = path.read_bytes()[:len(data) % 400]
    path.write_bytes(data)
    result = _read(path)
    if isinstance(result, DataError):
        _check(path, data, result, [])
        return
    for row in result:
        for problem in check_row(row):
            assert problem.file == str(path)
            str(problem).encode("utf-8")
    if fmt == "jsonl":
        assert len(result) == sum(1 for line in data.split(b"\n") if line.strip(b" \t\r"))
    if fmt == "parquet":
        assert len(result) == 1 and result[0].record is None
