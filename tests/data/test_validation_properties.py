"""Property tests of the validator: any parsed value gets a verdict, never an exception.

The expected verdict is restated here from the seed format's contract (``{task, input,
target}`` as non-empty UTF-8 strings, a known task, optional ``answers`` as a list of such
strings), and every error must name the file, the line and the offending field in a message
that can be printed and written to the rejects file, lone surrogates included.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from multi_task_kobart.data.validation import (REQUIRED_FIELDS, ROW_FIELD, summarize_errors,
                                               validate_record)
from multi_task_kobart.tasks import TASKS

PROPERTY = settings(max_examples=50, deadline=None, derandomize=True, database=None)

# Text as JSON can carry it: lone surrogates come from "\udcff" escapes and from the readers'
# surrogateescape decoding of bytes that are not UTF-8.
any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=8)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | any_text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(any_text, children, max_size=3),
    max_leaves=8)
bad_byte_text = any_text.map(lambda t: t + "\udcff")
field_values = st.one_of(st.sampled_from(TASKS), any_text, bad_byte_text, st.sampled_from(["", " ", "\u3000"]),
                         st.lists(bad_byte_text, min_size=1, max_size=2), json_values)
records = st.one_of(
    json_values,
    st.fixed_dictionaries({}, optional={name: field_values for name in REQUIRED_FIELDS}
                          | {"answers": st.one_of(st.lists(field_values, max_size=3), json_values)}))


def _good_text(value: object) -> bool:
    return (isinstance(value, str) and bool(value.strip())
            and not any("\ud800" <= char <= "\udfff" for char in value))


def _bad_fields(record: object) -> set[str]:
    """The fields the validator must name, from the seed format's contract."""
    if not isinstance(record, dict):
        return {ROW_FIELD}
    bad = {name for name in REQUIRED_FIELDS if not _good_text(record.get(name))}
    if "task" in record and record["task"] not in TASKS:
        bad.add("task")
    answers = record.get("answers")
    if answers is not None and not (isinstance(answers, list) and all(map(_good_text, answers))):
        bad.add("answers")
    return bad


@PROPERTY
@given(record=records, line=st.integers(0, 10**6), unit=st.sampled_from(["line", "row"]))
def test_every_value_gets_a_verdict_naming_file_line_and_field(record, line, unit):
    errors = validate_record(record, "data/rows.jsonl", line, unit)
    assert {error.field for error in errors} == _bad_fields(record)
    for error in errors:
        assert (error.file, error.line, error.unit) == ("data/rows.jsonl", line, unit)
        assert str(error).startswith(error.location + ": field ")
        str(error).encode("utf-8")  # no lone surrogate reaches stderr or the rejects file
    if errors:
        summarize_errors(errors).encode("utf-8")


def test_a_value_nested_just_below_the_parse_limit_is_still_described():
    """The validator runs a few frames deeper than the parser: quoting the deepest list that
    parsed can hit the recursion limit, and must not turn a bad row into a crash."""
    depth, record = 100, None
    while True:  # the deepest nesting json can parse from here
        try:
            record = json.loads('{"input": ' + "[" * (depth + 1) + "]" * (depth + 1) + "}")
        except RecursionError:
            break
        depth += 1
    (error,) = [e for e in validate_record(record, "rows.jsonl", 1) if e.field == "input"]
    assert error.reason.startswith("wrong type: expected a string, got list ")
