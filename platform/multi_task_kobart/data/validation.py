"""Row-level validation of seed records ``{task, input, target}`` (+ optional ``answers``).

Every problem becomes a ``RowError`` that names the file, the line (or Parquet row), the
field and the reason, so a user can jump straight to the offending spot. Problems are
collected rather than raised one at a time: a file with twenty bad rows should cost the
user one run to see all twenty, not twenty runs. ``DataValidationError`` carries them all.
Problems with the data as a whole (an empty folder, a file in another encoding) raise
``DataError``: the user's input is wrong, not this code, so command-line jobs answer it with
one line instead of a traceback.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from multi_task_kobart.tasks import TASKS

#: Fields every record must carry as non-empty strings.
REQUIRED_FIELDS: tuple[str, ...] = ("task", "input", "target")
#: Pseudo-fields for problems that are not about one column.
ROW_FIELD = "<row>"
JSON_FIELD = "<json>"
BYTES_FIELD = "<bytes>"
#: How many problems ``str(DataValidationError)`` spells out before summarising the rest.
MAX_LISTED_ERRORS = 50


@dataclass(frozen=True)
class RowError:
    """One problem in one source row.

    ``line`` is the 1-based line number for text formats (JSONL, JSON, CSV) and the 0-based
    row index for Parquet / hub datasets (``unit`` says which), matching what editors and
    ``pyarrow`` show respectively.
    """

    file: str
    line: int
    field: str
    reason: str
    unit: str = "line"  # "line" or "row"

    @property
    def location(self) -> str:
        """``file:line`` for text files, ``file[row N]`` for tabular ones."""
        return f"{self.file}:{self.line}" if self.unit == "line" else f"{self.file}[row {self.line}]"

    def __str__(self) -> str:
        return f"{self.location}: field {self.field!r}: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class DataError(ValueError):
    """The user's data or data settings are wrong (not a bug in this code); the message says
    what was found and what to do about it."""


class MissingInputError(DataError, FileNotFoundError):
    """An input path that does not exist; still a ``FileNotFoundError`` to callers that ask."""


class DataValidationError(DataError):
    """Raised (with ``on_error="fail"``) when any source row is invalid; lists all problems."""

    def __init__(self, errors: list[RowError]):
        self.errors = list(errors)
        super().__init__(summarize_errors(self.errors))


def summarize_errors(errors: list[RowError], max_listed: int = MAX_LISTED_ERRORS) -> str:
    """Readable summary: totals, counts per reason kind, then each problem with its location."""
    rows = {(e.file, e.line) for e in errors}
    files = {e.file for e in errors}
    kinds = Counter(reason_kind(e.reason) for e in errors)
    lines = [f"{len(errors)} problem(s) in {len(rows)} row(s) across {len(files)} file(s) "
             f"({', '.join(f'{kind}: {n}' for kind, n in kinds.most_common())}):"]
    lines += [f"  {error}" for error in errors[:max_listed]]
    if len(errors) > max_listed:
        lines.append(f"  ... and {len(errors) - max_listed} more (all of them are in .errors; "
                     f"--on-error skip writes them to a rejects file).")
    return "\n".join(lines)


def reason_kind(reason: str) -> str:
    # Every reason reads "<kind>: <detail>"; the kind groups them ("malformed JSON", ...).
    return reason.split(":", 1)[0]


def validate_record(record: Any, file: str, line: int, unit: str = "line") -> list[RowError]:
    """All problems of one parsed record (an empty list means the record is valid)."""
    if not isinstance(record, dict):
        return [RowError(file, line, ROW_FIELD,
                         f"not an object: expected {{task, input, target}}, got {type(record).__name__}",
                         unit)]
    errors = [RowError(file, line, name, reason, unit)
              for name in REQUIRED_FIELDS
              if (reason := _string_problem(record.get(name), present=name in record))]
    task = record.get("task")
    if isinstance(task, str) and task.strip() and task not in TASKS:
        allowed = ", ".join(TASKS)
        errors.append(RowError(file, line, "task", f"unknown task: {task!r}; valid: {allowed}", unit))
    reason = _answers_problem(record.get("answers"))
    if reason:
        errors.append(RowError(file, line, "answers", reason, unit))
    return errors


def _string_problem(value: Any, *, present: bool) -> str | None:
    """Why ``value`` is not a usable text field, or None when it is."""
    if not present:
        return "missing field"
    if not isinstance(value, str):
        return f"wrong type: expected a string, got {type(value).__name__} {_short(value)}"
    if not value.strip():
        return f"empty string: {value!r}"
    return _utf8_problem(value)


def _utf8_problem(text: str) -> str | None:
    """Readers decode with ``surrogateescape``, so undecodable bytes survive as lone surrogates
    (as do JSON escapes like ``\\udc80``); neither can be written back as UTF-8."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        char = text[exc.start]
        shown = f"byte 0x{ord(char) - 0xDC00:02x}" if 0xDC80 <= ord(char) <= 0xDCFF else repr(char)
        return f"invalid UTF-8: {shown} at character {exc.start}"
    return None


def _answers_problem(value: Any) -> str | None:
    """``answers`` is optional; when given it must be a list of non-empty strings."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
        return f"wrong type: expected a list of strings, got {_short(value)}"
    for answer in value:
        if not answer.strip():
            return f"empty string: answers {value!r} hold an empty answer"
        problem = _utf8_problem(answer)
        if problem:
            return problem
    return None


def _short(value: Any, limit: int = 60) -> str:
    """``value`` for a message: short, and always writable as UTF-8 (an undecodable byte
    inside a list shows as ``\\udcff``, which stderr and the rejects file can both hold)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=repr)
    except RecursionError:  # nesting that parsed just below the limit, reached here a few frames deeper
        text = f"<{type(value).__name__} nested too deeply to show>"
    text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text if len(text) <= limit else text[: limit - 3] + "..."
