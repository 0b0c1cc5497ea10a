"""Find and read seed-format files: JSONL, a JSON list, CSV (or TSV) and Parquet.

Why not hand local files straight to ``datasets.load_dataset("json"/"csv")``? Its loaders
drop line numbers, coerce types (a numeric ``input`` silently becomes text or a schema error
for the whole file) and stop at the first undecodable byte. Users need ``file:line, field,
reason`` for every bad row, so the text formats are parsed here, line by line, with bytes
decoded as ``surrogateescape`` (invalid UTF-8 survives as markers the validator points at).
Valid rows then go into a ``datasets.Dataset`` for batched tokenization (see prepare.py);
names that are not local paths are read with ``datasets.load_dataset`` from the hub.

Every row that goes in comes out, either as a record or with its errors; a file that cannot
be read at all is one error, never an exception from a parser. How bytes become text (and
when a whole file is refused for its encoding) is in encodings.py.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Literal, Sequence, get_args

from multi_task_kobart.data.encodings import DEFAULT_ENCODING, decode_text
from multi_task_kobart.data.validation import (BYTES_FIELD, JSON_FIELD, ROW_FIELD, DataError,
                                               MissingInputError, RowError, validate_record)

#: The splits of a prepared dataset (``evaluation.split`` in the experiment config).
Split = Literal["train", "valid", "test"]
SPLITS: tuple[str, ...] = get_args(Split)
FORMATS_BY_SUFFIX = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
                     ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
# Words in a file or folder name that mark a split; anything else is training data.
_SPLIT_WORDS = {"test": "test", "heldout": "test", "held": "test", "holdout": "test",
                "valid": "valid", "validation": "valid", "val": "valid", "dev": "valid",
                "train": "train", "training": "train"}
_JSON_WS = re.compile(r"[ \t\n\r]*")
_JSON_DECODER = json.JSONDecoder()
_RAW_LIMIT = 2000  # characters of a rejected row kept in the rejects file


@dataclass(frozen=True)
class SourceFile:
    """One input file: where it is, how it is shown in messages, its format and split."""

    path: Path
    name: str  # path relative to the input root: stable, kept in the manifest and shards
    format: str  # jsonl | json | csv | tsv | parquet
    split: str  # train | valid | test

    @property
    def display(self) -> str:
        """The path as the user gave it (joined with the root): what errors show, so the
        user can open exactly that file."""
        return str(self.path)

    def sha256(self) -> str:
        digest = hashlib.sha256()
        with open(self.path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
        return digest.hexdigest()


@dataclass
class RawRow:
    """A parsed (not yet validated) record with its location; ``errors`` holds parse errors."""

    record: Any
    file: str
    line: int
    raw: str | None  # source text for the rejects file; None: rebuild it from ``record``
    unit: str = "line"
    errors: list[RowError] = field(default_factory=list)

    def raw_text(self) -> str:
        if self.raw is not None:
            return self.raw
        return json.dumps(self.record, ensure_ascii=False, default=repr)[:_RAW_LIMIT]


def discover_sources(inputs: str | Path | Sequence[str | Path]) -> list[SourceFile]:
    """Every data file under ``inputs`` (files and/or folders), in a stable order."""
    items = [inputs] if isinstance(inputs, (str, Path)) else list(inputs)
    if not items:
        raise DataError("no inputs given; pass a file or folder of {task, input, target} records.")
    sources: list[SourceFile] = []
    for item in items:
        path = Path(item)
        if path.is_file():
            sources.append(_source(path, path.parent))
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and p.suffix.lower() in FORMATS_BY_SUFFIX
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                raise DataError(f"folder {str(path)!r} holds no data files; expected one of "
                                f"{', '.join(sorted(FORMATS_BY_SUFFIX))}.")
            sources.extend(_source(p, path) for p in found)
        else:
            raise MissingInputError(f"input {str(path)!r} is neither a file nor a folder.")
    return sources


def _source(path: Path, root: Path) -> SourceFile:
    fmt = FORMATS_BY_SUFFIX.get(path.suffix.lower())
    if fmt is None:
        raise DataError(f"cannot read {str(path)!r}: unknown extension {path.suffix!r}; "
                        f"supported: {', '.join(sorted(FORMATS_BY_SUFFIX))}.")
    relative = path.relative_to(root)
    return SourceFile(path=path, name=relative.as_posix(), format=fmt, split=split_for_name(relative))


def split_for_name(relative: Path | str) -> str:
    """Split named by a path: the file stem first, then its folders from the inside out."""
    relative = Path(relative)
    components = [relative.stem] + [part for part in reversed(relative.parts[:-1])]
    for component in components:
        for word in re.split(r"[^a-z0-9]+", component.lower()):
            if word in _SPLIT_WORDS:
                return _SPLIT_WORDS[word]
    return "train"


def read_source(source: SourceFile, encoding: str = DEFAULT_ENCODING) -> Iterator[RawRow]:
    """Rows of one file, each with its exact location; text formats are decoded with
    ``encoding`` (see :func:`~multi_task_kobart.data.encodings.decode_text`)."""
    if source.format == "parquet":
        yield from _read_parquet(source)
        return
    text = decode_text(source.path.read_bytes(), source.display, encoding)
    readers = {"jsonl": _read_jsonl, "json": _read_json, "csv": _read_csv, "tsv": _read_csv}
    start = _JSON_WS.match(text).end()
    if source.format == "json" and text[start:start + 1] == "{":
        readers["json"] = _read_jsonl  # a .json file holding one object per line
    yield from readers[source.format](text, source)


def _read_jsonl(text: str, source: SourceFile) -> Iterator[RawRow]:
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.rstrip("\r")
        if not line.strip(" \t\r"):
            continue  # blank lines are layout, not rows
        row = RawRow(None, source.display, number, line[:_RAW_LIMIT])
        try:
            row.record = _loads(line)
        except json.JSONDecodeError as exc:
            row.errors.append(RowError(source.display, number, JSON_FIELD,
                                       f"malformed JSON: {exc.msg} (column {exc.colno})"))
            bad_byte = _first_bad_byte(line)
            if bad_byte is not None:
                row.errors.append(RowError(source.display, number, BYTES_FIELD,
                                           f"invalid UTF-8: byte 0x{bad_byte[1]:02x} "
                                           f"at byte {bad_byte[0]}"))
        yield row


def _raw_decode(text: str, index: int) -> tuple[Any, int]:
    """``JSONDecoder.raw_decode`` whose every failure is a ``JSONDecodeError``: Python's parser
    also raises RecursionError (nesting deeper than the recursion limit) and ValueError (an
    integer of more digits than ``sys.get_int_max_str_digits()``), and both are bad rows."""
    try:
        return _JSON_DECODER.raw_decode(text, index)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, index) from None
    except ValueError:
        raise json.JSONDecodeError(f"number longer than {sys.get_int_max_str_digits()} digits",
                                   text, index) from None


def _loads(text: str) -> Any:
    """``json.loads`` on top of :func:`_raw_decode`."""
    value, end = _raw_decode(text, _JSON_WS.match(text).end())
    end = _JSON_WS.match(text, end).end()
    if end != len(text):
        raise json.JSONDecodeError("Extra data", text, end)
    return value


def _first_bad_byte(line: str) -> tuple[int, int] | None:
    """Offset and value of the first undecodable byte of a ``surrogateescape``-decoded line."""
    raw = line.encode("utf-8", "surrogateescape")
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start, raw[exc.start]
    return None


def _read_json(text: str, source: SourceFile) -> Iterator[RawRow]:
    """A top-level JSON list; each element's line is where the element starts."""
    index = _JSON_WS.match(text, 0).end()
    if text[index:index + 1] != "[":
        yield _file_error(source, text, index, "malformed JSON: expected a list of records ('[' ...)")
        return
    index, line, counted_to = index + 1, 1, 0
    while True:
        index = _JSON_WS.match(text, index).end()
        if text[index:index + 1] == "]":
            break
        line += text.count("\n", counted_to, index)
        counted_to = index
        try:
            record, end = _raw_decode(text, index)
        except json.JSONDecodeError as exc:
            yield _file_error(source, text, exc.pos, f"malformed JSON: {exc.msg}")
            return
        yield RawRow(record, source.display, line, text[index:end][:_RAW_LIMIT])
        index = _JSON_WS.match(text, end).end()
        if text[index:index + 1] == ",":
            index += 1
        elif text[index:index + 1] != "]":
            yield _file_error(source, text, index, "malformed JSON: expected ',' or ']'")
            return
    # Records after the list (a second list, a stray object) would otherwise vanish unread.
    index = _JSON_WS.match(text, index + 1).end()
    if index < len(text):
        yield _file_error(source, text, index, "malformed JSON: extra data after the list")


def _file_error(source: SourceFile, text: str, pos: int, reason: str) -> RawRow:
    # A broken JSON list cannot be resynchronised, so the rest of the file is unreadable;
    # say so, so that nothing after this point disappears without a word.
    line = text.count("\n", 0, pos) + 1
    row = RawRow(None, source.display, line, text[pos:pos + 200])
    row.errors.append(RowError(source.display, line, JSON_FIELD,
                               f"{reason} (column {pos - text.rfind(chr(10), 0, pos)}); "
                               f"the rest of the file could not be read"))
    return row


def _read_csv(text: str, source: SourceFile) -> Iterator[RawRow]:
    """CSV/TSV with a header row; locations are file lines (a quoted cell may span several)."""
    # The csv module refuses cells over 128 KiB by default, but a long input is data, not an
    # error. The limit is process-wide, so it is only ever raised: no cell is longer than its file.
    csv.field_size_limit(max(csv.field_size_limit(), len(text)))
    reader = csv.reader(io.StringIO(text, newline=""),
                        delimiter="\t" if source.format == "tsv" else ",")
    try:
        yield from _csv_rows(reader, source)
    except csv.Error as exc:  # Python 3.10 refuses a NUL character, for one
        line = reader.line_num
        row = RawRow(None, source.display, line, "")
        row.errors.append(RowError(source.display, line, ROW_FIELD,
                                   f"malformed CSV: {exc}; the rest of the file could not be read"))
        yield row


def _csv_rows(reader: Any, source: SourceFile) -> Iterator[RawRow]:
    header = next(reader, None)
    missing = [name for name in ("task", "input", "target") if name not in (header or [])]
    if missing:
        row = RawRow(None, source.display, 1, ",".join(header or []))
        row.errors.append(RowError(source.display, 1, ROW_FIELD,
                                   f"missing columns: {missing} not in header {header!r}"))
        yield row
        return
    previous_end = reader.line_num
    for cells in reader:
        start, previous_end = previous_end + 1, reader.line_num
        if not cells:
            continue
        yield _csv_row(header, cells, source, start)


def _csv_row(header: list[str], cells: list[str], source: SourceFile, line: int) -> RawRow:
    record: dict[str, Any] = dict(zip(header, cells))
    row = RawRow(record, source.display, line, ",".join(cells)[:_RAW_LIMIT])
    if len(cells) > len(header):
        row.errors.append(RowError(source.display, line, ROW_FIELD,
                                   f"extra cells: row has {len(cells)}, header has {len(header)}"))
    if "answers" in record:
        record["answers"], problem = _csv_answers(record["answers"])
        if problem:
            row.errors.append(RowError(source.display, line, "answers", problem))
    return row


def _csv_answers(cell: str) -> tuple[list | None, str | None]:
    """CSV has no lists, so several gold answers travel as a JSON list in one cell."""
    if cell == "":
        return None, None
    try:
        value = _loads(cell)
    except json.JSONDecodeError:
        value = None
    if isinstance(value, list):
        return value, None
    return None, f"wrong type: expected a JSON list of strings, got {cell!r}"


def _read_parquet(source: SourceFile) -> Iterator[RawRow]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(source.path)
        names = parquet.schema_arrow.names
    except (pa.ArrowException, OSError) as exc:  # not Parquet at all, or a cut-off copy
        yield _parquet_error(source, 0, "", f"unreadable Parquet file: {_one_line(exc)}")
        return
    missing = [name for name in ("task", "input", "target") if name not in names]
    if missing:
        yield _parquet_error(source, 0, str(parquet.schema_arrow),
                             f"missing columns: {missing} not in {names}")
        return
    columns = [name for name in ("task", "input", "target", "answers") if name in names]
    index = 0
    try:
        for batch in parquet.iter_batches(batch_size=65536, columns=columns):
            for record in _batch_records(batch):
                yield RawRow(record, source.display, index, None, "row")
                index += 1
    # A damaged page: rows from here on are lost. (UnicodeDecodeError: bad bytes that even
    # _batch_records cannot set aside, inside a struct column, say.)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        yield _parquet_error(source, index, "", f"unreadable Parquet data: {_one_line(exc)}; "
                                                f"the rest of the file could not be read")


def _batch_records(batch: Any) -> list[dict[str, Any]]:
    """The rows of a Parquet batch as dicts.

    Arrow does not check that string data is UTF-8 when it reads it, so bad bytes (from
    another writer, or a damaged page) fail the conversion of the whole batch. Then its
    strings are read as bytes and decoded as the text formats are, with ``surrogateescape``:
    the validator names the rows and fields that hold them, and the other rows are kept.
    """
    try:
        return batch.to_pylist()
    except UnicodeDecodeError:
        columns = [_decoded(column.cast(_as_binary(column.type)).to_pylist())
                   if _as_binary(column.type) != column.type else column.to_pylist()
                   for column in batch.columns]
        return [dict(zip(batch.schema.names, values)) for values in zip(*columns)]


def _as_binary(kind: Any) -> Any:
    """Arrow type ``kind`` with its strings (also those in lists) as bytes."""
    import pyarrow as pa

    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return pa.large_binary()
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return pa.large_list(_as_binary(kind.value_type))
    return kind


def _decoded(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    if isinstance(value, list):
        return [_decoded(item) for item in value]
    return value


def _parquet_error(source: SourceFile, index: int, raw: str, reason: str) -> RawRow:
    row = RawRow(None, source.display, index, raw, unit="row")
    row.errors.append(RowError(source.display, index, ROW_FIELD, reason, "row"))
    return row


def _one_line(error: Exception) -> str:
    # Arrow's messages span lines ("Couldn't deserialize thrift: ...\nDeserializing page
    # header failed."); a problem is listed on one line.
    return " ".join(str(error).split())


def read_hub_dataset(name: str) -> dict[str, list[RawRow]]:
    """Rows of a hub dataset's splits (needs a reachable hub); locations are row indexes."""
    import datasets

    try:
        dataset_dict = datasets.load_dataset(name)
    except Exception as exc:  # offline, unknown name, gated: all end the same way for the user
        raise DataError(f"{name!r} is not a local file or folder, and loading it as a hub "
                        f"dataset failed ({type(exc).__name__}: {exc}).") from exc
    result: dict[str, list[RawRow]] = {}
    for split_name, dataset in dataset_dict.items():
        label = f"{name}:{split_name}"
        result.setdefault(split_for_name(split_name), []).extend(
            RawRow(record, label, index, None, "row") for index, record in enumerate(dataset))
    return result


def check_row(row: RawRow) -> list[RowError]:
    """Parse errors of ``row`` or, when it parsed, its validation errors."""
    if row.errors and row.record is None:
        return row.errors
    return row.errors + validate_record(row.record, row.file, row.line, row.unit)
