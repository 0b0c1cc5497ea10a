"""The bundled corpus: sizes, schema, determinism, a truly held-out test split, Korean grammar."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections import Counter

import pytest

from multi_task_kobart.data.corpus import (
    TEST_PER_TASK, TRAIN_PER_TASK, generate_corpus, is_held_out, task_candidates, write_corpus,
)
from multi_task_kobart.data.corpus.korean import (
    Verb, banmal, connective, formal, honorific, josa, past, prospective, suggest,
)
from multi_task_kobart.data.corpus.role import role_families
from multi_task_kobart.data.corpus.style import style_transfer_families
from multi_task_kobart.tasks import TASKS


@pytest.fixture(scope="module")
def corpus() -> dict[str, list[dict]]:
    return generate_corpus(0)


def _by_task(rows: list[dict], task: str) -> list[dict]:
    return [row for row in rows if row["task"] == task]


def test_sizes_per_task_and_split(corpus):
    assert set(corpus) == {"train", "test"}
    for split, minimum in (("train", 2000), ("test", 300)):
        counts = Counter(row["task"] for row in corpus[split])
        assert set(counts) == set(TASKS)
        assert all(count >= minimum for count in counts.values()), counts
    assert TRAIN_PER_TASK >= 2000 and TEST_PER_TASK >= 300


def test_row_schema(corpus):
    for row in corpus["train"] + corpus["test"]:
        expected = {"task", "input", "target"}
        if row["task"] == "qa_generation":
            expected.add("answers")
        assert set(row) == expected, row
        assert row["input"].strip() == row["input"] and row["input"]
        assert row["target"].strip() == row["target"] and row["target"]
        assert "  " not in row["input"] and "  " not in row["target"]


def test_generation_is_deterministic_and_seeded(corpus):
    assert generate_corpus(0) == corpus
    other = generate_corpus(1)
    assert other != corpus
    assert {len(rows) for rows in other.values()} == {len(rows) for rows in corpus.values()}


def test_generation_is_fast():
    start = time.perf_counter()
    generate_corpus(3)
    assert time.perf_counter() - start < 3.0


def test_no_test_input_appears_in_train(corpus):
    train_inputs = {row["input"] for row in corpus["train"]}
    assert not [row["input"] for row in corpus["test"] if row["input"] in train_inputs]
    for split in ("train", "test"):
        inputs = [row["input"] for row in corpus[split]]
        assert len(inputs) == len(set(inputs)), f"duplicate inputs in {split}"


@pytest.mark.parametrize("task", TASKS)
def test_held_out_slot_combinations_are_disjoint(task):
    candidates = task_candidates(task, seed=0)
    train_keys = {c.key for c in candidates["train"]}
    test_keys = {c.key for c in candidates["test"]}
    assert train_keys.isdisjoint(test_keys)
    assert all(is_held_out(0, task, key) for key in test_keys)
    assert not any(is_held_out(0, task, key) for key in train_keys)
    # Held-out combinations recombine values seen in training (every slot value shows up there).
    seen = {value for key in train_keys for value in key}
    assert all(value in seen for key in test_keys for value in key if value)


def test_qa_answers_hold_the_target(corpus):
    for row in _by_task(corpus["train"] + corpus["test"], "qa_generation"):
        assert row["answers"][0] == row["target"] and len(row["answers"]) >= 2
        assert all(isinstance(answer, str) and answer for answer in row["answers"])
        if " 문맥: " in row["input"]:  # extractive: a short answer that the context contains
            assert row["target"] in row["input"].split(" 문맥: ", 1)[1]
        else:  # closed book: a full sentence, as in the SPEC example
            assert row["target"].endswith("니다.") and row["answers"][1] in row["target"]
    qa_inputs = [row["input"] for row in _by_task(corpus["test"], "qa_generation")]
    assert 0.3 < sum(" 문맥: " in text for text in qa_inputs) / len(qa_inputs) < 0.9


def test_task_formats(corpus):
    rows = corpus["train"] + corpus["test"]
    for row in _by_task(rows, "dialogue_summarization"):
        assert row["input"].startswith("A: ") and " B: " in row["input"]
        assert 2 <= len(re.findall(r"(?:^| )[AB]: ", row["input"])) <= 6
        assert row["target"].endswith("다.") and row["target"].count(". ") == 0
    for row in _by_task(rows, "role_generation"):
        assert re.match(r"^\[(선생님|친구|의사|상담사|고객센터|여행 가이드|요리사)\] \S", row["input"])
        if row["input"].startswith("[친구]"):
            assert "니다" not in row["target"] and "요." not in row["target"]  # 반말 replies
    for row in _by_task(rows, "style_transfer"):
        assert not row["input"].endswith(("니다.", "니까?", "요.", "요?"))
        assert row["target"].endswith(("니다.", "니까?", "요?"))


def test_spec_examples_are_in_the_candidate_pools():
    style = {(c.input, c.target) for family in style_transfer_families() for c in family}
    assert ("이거 좀 도와줘.", "이것 좀 도와주시겠습니까?") in style
    assert ("빨리 와.", "빨리 와 주시기 바랍니다.") in style
    roles = {(c.input, c.target) for family in role_families() for c in family}
    assert ("[선생님] 파이썬이란?", "파이썬은 배우기 쉬운 프로그래밍 언어입니다.") in roles
    assert ("[친구] 주말에 뭐해?", "특별한 계획은 없어. 너는?") in roles


@pytest.mark.parametrize("verb, casual_past, formal_present, honorific_past_q, will", [
    (Verb("가"), "갔어", "갑니다", "가셨습니까", "갈"),
    (Verb("먹", honorific="드시"), "먹었어", "먹습니다", "드셨습니까", "먹을"),
    (Verb("하"), "했어", "합니다", "하셨습니까", "할"),
    (Verb("돕", "ㅂ"), "도왔어", "돕습니다", "도우셨습니까", "도울"),
    (Verb("듣", "ㄷ"), "들었어", "듣습니다", "들으셨습니까", "들을"),
    (Verb("부르", "르"), "불렀어", "부릅니다", "부르셨습니까", "부를"),
    (Verb("만들"), "만들었어", "만듭니다", "만드셨습니까", "만들"),
    (Verb("마시"), "마셨어", "마십니다", "마시셨습니까", "마실"),
    (Verb("쓰"), "썼어", "씁니다", "쓰셨습니까", "쓸"),
    (Verb("배우"), "배웠어", "배웁니다", "배우셨습니까", "배울"),
    (Verb("짓", "ㅅ"), "지었어", "짓습니다", "지으셨습니까", "지을"),
])
def test_conjugation(verb, casual_past, formal_present, honorific_past_q, will):
    assert banmal(verb, "past") == casual_past
    assert formal(verb) == formal_present
    assert honorific(verb, "past", question=True) == honorific_past_q
    assert prospective(verb) == will


def test_conjugation_details():
    assert [connective(Verb(s)) for s in ("보", "주", "되", "바쁘", "켜", "보내", "쉬")] == \
        ["봐", "줘", "돼", "바빠", "켜", "보내", "쉬어"]
    assert past(Verb("오")) == "왔" and suggest(Verb("읽")) == "읽자"
    assert formal(Verb("읽"), "past") == "읽었습니다" and banmal(Verb("알"), "future") == "알 거야"
    with pytest.raises(ValueError, match="irregular"):
        Verb("가", "ㅎ")


def test_particles():
    assert [josa(w, "은/는") for w in ("책", "사과", "2시", "3시 반")] == ["책은", "사과는", "2시는", "3시 반은"]
    assert [josa(w, "으로/로") for w in ("집", "학교", "서울", "1층", "7")] == ["집으로", "학교로", "서울로", "1층으로", "7로"]
    assert josa("《푸른 들판》", "이/가") == "《푸른 들판》이" and josa("커피", "을/를") == "커피를"
    with pytest.raises(ValueError, match="ends in 'x'"):
        josa("box", "을/를")


def test_write_corpus(tmp_path, corpus):
    paths = write_corpus(tmp_path / "out", seed=0)
    assert set(paths) == {"train", "test"}
    for split, path in paths.items():
        text = path.read_text(encoding="utf-8")
        assert "\\u" not in text and "니다" in text  # Korean written as UTF-8, not escaped
        assert [json.loads(line) for line in text.splitlines()] == corpus[split]


def test_command_line_writes_the_same_files(tmp_path, corpus):
    result = subprocess.run([sys.executable, "-m", "multi_task_kobart.data.corpus", str(tmp_path), "--seed", "0"],
                            capture_output=True, text=True, timeout=120, check=True)
    assert result.stdout.splitlines() == [f"train: {tmp_path / 'train.jsonl'}", f"test: {tmp_path / 'test.jsonl'}"]
    for split in ("train", "test"):
        lines = (tmp_path / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
        assert [json.loads(line) for line in lines] == corpus[split]
