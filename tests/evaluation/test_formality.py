"""The rule-based formality classifier: endings, jamo, punctuation, and accuracy on real pairs."""

from __future__ import annotations

import json

import pytest

from multi_task_kobart.evaluation.formality import classify_formality, formal_share, is_formal


@pytest.mark.parametrize("text", [
    "이것을 도와주시겠습니까?",          # -습니까
    "빠른 시일 내에 방문해 주시기 바랍니다.",  # -ㅂ니다 (final ㅂ on 랍)
    "이거 좀 도와주세요",               # -세요, no punctuation
    "그렇죠?",                          # -죠
    "갑시다!",                          # -ㅂ시다
    "여기 앉으십시오.",                 # -십시오
    "좋아요^^",                         # trailing emoticon
    "감사합니다 ㅠㅠ",                  # trailing jamo laughter/crying
    "고마워요 😊",                       # trailing emoji
    "먹었어요~~",
    "네.",                              # polite yes
    "안녕하세요, 저는 로봇을 좋아합니다.",
    "이 외에도 많은 빵들을 굽습니다 제 빵집에서는.",  # inverted sentence: ending is not last
])
def test_formal_sentences(text):
    assert is_formal(text), classify_formality(text)


@pytest.mark.parametrize("text", [
    "빨리 와",                # one-syllable casual verb
    "밥 먹었니?",
    "가니까",                  # -니까 without a final ㅂ before it is a casual connective
    "좋아 ㅋㅋㅋ",
    "응",
    "안녕.",
    "나도 대학교에 다시 가고 싶네.",
    "안녕하세요, 조금 배고프지 않아?",  # polite greeting, casual final sentence
    "그러면 뭘 주로 해?",
    "사고는 이미 일어났다.",   # 해라체 narrative is not polite
    "그게 필요.",             # 필요 ends in 요 but is a noun
])
def test_not_formal_sentences(text):
    assert not is_formal(text), classify_formality(text)


def test_neutral_text_and_shares():
    assert classify_formality("").label == "neutral"
    assert classify_formality("   ...  ").label == "neutral"
    assert classify_formality("hello 123").label == "neutral"
    assert classify_formality("빨리 와").word == "와"
    assert formal_share([]) == 0.0
    assert formal_share(["감사합니다.", "고마워.", "좋아요", "응"]) == pytest.approx(50.0)


def _check_accuracy(rows: list[dict], source: str) -> None:
    """Targets must read formal and inputs informal, each for >= 95% of ``rows`` (printed with -s)."""
    targets_formal = formal_share([row["target"] for row in rows])
    inputs_informal = 100.0 - formal_share([row["input"] for row in rows])
    print(f"\nformality classifier on {len(rows)} {source} pairs: targets formal {targets_formal:.1f}%, "
          f"inputs informal {inputs_informal:.1f}%")
    assert targets_formal >= 95.0
    assert inputs_informal >= 95.0


def test_accuracy_on_real_style_transfer_pairs(realdata_dir):
    """The 200 real pairs these tests were written from (so not a held-out measure)."""
    rows = [json.loads(line) for line in (realdata_dir / "style_transfer.jsonl").open(encoding="utf-8")]
    assert len(rows) >= 100
    _check_accuracy(rows, "real")


def test_accuracy_on_rows_the_tests_were_not_written_from():
    """The bundled corpus's style rows: generated from templates, and used by no other test here."""
    from multi_task_kobart.data.corpus import generate_corpus

    rows = [row for split in generate_corpus(seed=0).values() for row in split
            if row["task"] == "style_transfer"]
    assert len(rows) >= 1000
    _check_accuracy(rows, "bundled-corpus")
