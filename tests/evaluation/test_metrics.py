"""Each metric against hand-computed values on small Korean examples."""

from __future__ import annotations

import json
import math

import pytest
from rouge_score import rouge_scorer

from multi_task_kobart.evaluation import metrics
from multi_task_kobart.evaluation.baselines import baseline_predictions, lead_sentence


# ---------------------------------------------------------------- BLEU / chrF


def test_char_bleu_matches_hand_computed_ngram_precisions():
    # Syllables 가나다라마 vs 가나다라바: 1-4 gram precisions 4/5, 3/4, 2/3, 1/2, equal lengths.
    expected = 100 * (4 / 5 * 3 / 4 * 2 / 3 * 1 / 2) ** 0.25
    assert metrics.bleu(["가나다라마"], ["가나다라바"]) == pytest.approx(expected)


def test_char_bleu_ignores_korean_spacing_variation():
    # 띄어쓰기 differences do not change the syllable sequence: identical at character level.
    assert metrics.bleu(["내일 회의는 오후 2시 입니다"], ["내일 회의는 오후 2시입니다"]) == pytest.approx(100.0)
    assert metrics.bleu(["내일 회의는 오후 2시 입니다"], ["내일 회의는 오후 2시입니다"],
                        tokenize="13a") < 60.0


def test_word_bleu_matches_hand_count():
    # 13a tokens: 내일 회의는 오후 2시입니다 . vs ... 3시입니다 . -> precisions 4/5, 2/4, 1/3, 0/2;
    # sacrebleu's 'exp' smoothing turns the zero 4-gram count into 1 / (2 * 2).
    expected = 100 * (4 / 5 * 2 / 4 * 1 / 3 * 1 / 4) ** 0.25
    got = metrics.bleu(["내일 회의는 오후 2시입니다 ."], ["내일 회의는 오후 3시입니다 ."], tokenize="13a")
    assert got == pytest.approx(expected)


def test_bleu_and_chrf_identical_empty_and_no_rows():
    assert metrics.bleu(["서울의 인구는 약 1천만 명입니다."], ["서울의 인구는 약 1천만 명입니다."]) == pytest.approx(100.0)
    assert metrics.chrf(["서울의 인구는 약 1천만 명입니다."], ["서울의 인구는 약 1천만 명입니다."]) == pytest.approx(100.0)
    assert metrics.bleu([""], ["서울"]) == 0.0
    assert metrics.bleu([""], [""]) == 0.0
    assert metrics.chrf([""], ["서울"]) == 0.0
    assert metrics.bleu([], []) == 0.0 and metrics.chrf([], []) == 0.0
    with pytest.raises(ValueError, match="same length"):
        metrics.bleu(["a"], [])


def test_chrf_partial_overlap_is_between_bounds():
    score = metrics.chrf(["서울의 인구"], ["서울의 인구는 많다"])
    assert 0.0 < score < 100.0


def test_chrf_matches_hand_count_on_one_sentence():
    # chrF as sacrebleu defines it: spaces removed, character n-grams n=1..6, clipped matches;
    # precision and recall averaged over the orders that both sides have, then F-beta, beta=2.
    # "회의는 2시" -> 회의는2시 (5 chars); "회의는 오후 2시" -> 회의는오후2시 (7 chars).
    #   n  hyp  ref  match (which)
    #   1   5    7    5    회 의 는 2 시
    #   2   4    6    3    회의 의는 2시        (는2 is not in the reference)
    #   3   3    5    1    회의는
    #   4   2    4    0
    #   5   1    3    0
    #   6   0    2    -    (no hypothesis 6-gram: the order is left out)
    precision = (5 / 5 + 3 / 4 + 1 / 3 + 0 / 2 + 0 / 1) / 5  # = 5/12
    recall = (5 / 7 + 3 / 6 + 1 / 5 + 0 / 4 + 0 / 3) / 5     # = 99/350
    expected = 100 * 5 * precision * recall / (4 * precision + recall)  # = 100 * 2475/8188
    assert expected == pytest.approx(100 * 2475 / 8188, abs=1e-12)
    assert metrics.chrf(["회의는 2시"], ["회의는 오후 2시"]) == pytest.approx(expected, abs=1e-9)


def test_chrf_sums_counts_over_the_corpus_and_clips_repeats():
    # Second pair: "네네네" vs "네 알겠어" (네알겠어). Hypothesis 1-grams are 네 x3 but the reference
    # has one 네, so one match (clipped); 2-grams 네네 x2 and 3-gram 네네네 match nothing.
    # Corpus chrF adds the counts of both pairs before dividing (not a mean of sentence scores):
    #   n  hyp      ref      match
    #   1  5+3=8    7+4=11   5+1=6
    #   2  4+2=6    6+3=9    3+0=3
    #   3  3+1=4    5+2=7    1+0=1
    #   4  2+0=2    4+1=5    0
    #   5  1+0=1    3+0=3    0
    #   6  0        2        -   (left out)
    precision = (6 / 8 + 3 / 6 + 1 / 4 + 0 + 0) / 5          # = 3/10
    recall = (6 / 11 + 3 / 9 + 1 / 7 + 0 + 0) / 5           # = 236/1155
    expected = 100 * 5 * precision * recall / (4 * precision + recall)  # = 100 * 177/811
    assert expected == pytest.approx(100 * 177 / 811, abs=1e-12)
    got = metrics.chrf(["회의는 2시", "네네네"], ["회의는 오후 2시", "네 알겠어"])
    assert got == pytest.approx(expected, abs=1e-9)
    sentence_mean = (metrics.chrf(["회의는 2시"], ["회의는 오후 2시"]) + metrics.chrf(["네네네"], ["네 알겠어"])) / 2
    assert abs(got - sentence_mean) > 1.0  # the two averagings differ here, so the test tells them apart


# ---------------------------------------------------------------- ROUGE


def test_rouge_score_default_tokenizer_drops_hangul_but_ours_keeps_it():
    default = rouge_scorer.RougeScorer(["rouge1"]).score("회의는 내일", "회의는 내일")
    assert default["rouge1"].fmeasure == 0.0  # the problem this module exists for
    assert metrics.KoreanRougeTokenizer().tokenize("회의는 내일, Zoom 2시!") == ["회의는", "내일", "zoom", "2시"]
    assert metrics.KoreanRougeTokenizer("char").tokenize("회의 2시") == ["회", "의", "2", "시"]


def test_rouge_on_korean_matches_hand_count():
    prediction, reference = "내일 회의는 오후 2시입니다", "회의는 내일 오후 2시입니다."
    scores = metrics.rouge([prediction], [reference])
    # unigrams: all 4 shared; bigrams: only (오후, 2시입니다) of 3; LCS: 회의는 오후 2시입니다 = 3 of 4.
    assert scores["rouge1"] == pytest.approx(100.0)
    assert scores["rouge2"] == pytest.approx(100 / 3)
    assert scores["rougeL"] == pytest.approx(75.0)


def test_rouge_char_level_hand_count():
    # 12 syllables each; 내일 moved, so the LCS is 회의는오후2시입니다 (10) -> P = R = 10/12.
    scores = metrics.rouge(["내일 회의는 오후 2시입니다"], ["회의는 내일 오후 2시입니다"], level="char")
    assert scores["rougeL"] == pytest.approx(100 * 10 / 12)
    assert scores["rouge1"] == pytest.approx(100.0)


def test_rouge_partial_precision_and_recall():
    # prediction 3 words, reference 2 words, 2 shared: P = 2/3, R = 1, F = 0.8.
    scores = metrics.rouge(["서울은 정말 크다"], ["서울은 크다"])
    assert scores["rouge1"] == pytest.approx(80.0)
    assert scores["rougeL"] == pytest.approx(80.0)


def test_rouge_identical_empty_and_bad_level():
    same = metrics.rouge(["오늘 날씨가 좋네요"], ["오늘 날씨가 좋네요"])
    assert same == pytest.approx({"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0})
    assert metrics.rouge([""], ["오늘 날씨"]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert metrics.rouge([""], [""]) == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    with pytest.raises(ValueError, match="'word' or 'char'"):
        metrics.KoreanRougeTokenizer("morpheme")


# ---------------------------------------------------------------- KorQuAD EM / F1


def test_korquad_normalisation():
    assert metrics.normalize_answer("《한국》의  \"수도\" (서울)!") == "한국 의 수도 서울"
    assert metrics.normalize_answer("ABC-12") == "abc12"


def test_korquad_em_and_char_f1_hand_computed():
    # Spacing differs: EM fails (spaces count), F1 over characters without spaces is perfect.
    assert not metrics.exact_match("다나카기이치", "다나카 기이치")
    assert metrics.char_f1("다나카기이치", "다나카 기이치") == pytest.approx(1.0)
    # "1927년 4월" vs "1927년": 5 shared of 7 predicted and 5 gold -> P 5/7, R 1.
    assert metrics.char_f1("1927년 4월", "1927년") == pytest.approx(2 * (5 / 7) / (5 / 7 + 1))
    assert metrics.exact_match("'서울'", "서울")


def test_korquad_empty_strings_follow_the_official_script():
    assert metrics.exact_match("", "")
    assert metrics.char_f1("", "") == 0.0  # no shared character -> 0, as the script does
    assert metrics.char_f1("", "서울") == 0.0


def test_qa_scores_take_the_best_gold_answer():
    scores = metrics.qa_scores(["1927년", "도쿄"], [["1927년 4월 20일", "1927년"], ["오사카"]])
    assert scores == pytest.approx({"exact_match": 50.0, "f1": 50.0})
    with pytest.raises(ValueError, match="non-empty list"):
        metrics.qa_scores(["x"], [[]])


def _korquad_reference_f1(prediction: str, gold: str) -> float:
    """The official KorQuAD 1.0 procedure, written out step by step for comparison."""
    import string
    from collections import Counter

    def normalize(text: str) -> str:
        for char in "'\"《》<>〈〉()‘’":
            text = text.replace(char, " ")
        text = "".join(c for c in text.lower() if c not in set(string.punctuation))
        return " ".join(text.split())

    pred_chars = [c for token in normalize(prediction).split() for c in token]
    gold_chars = [c for token in normalize(gold).split() for c in token]
    same = sum((Counter(pred_chars) & Counter(gold_chars)).values())
    if same == 0:
        return 0.0
    p, r = same / len(pred_chars), same / len(gold_chars)
    return 2 * p * r / (p + r)


def test_em_f1_on_real_korquad_rows(realdata_dir):
    rows = [json.loads(line) for line in (realdata_dir / "qa_generation.jsonl").open(encoding="utf-8")]
    assert all(row["answers"] for row in rows)
    golds = [row["answers"] for row in rows]
    # Gold answers score 100; a variant with extra spaces and quotes keeps EM but not its bytes.
    assert metrics.qa_scores([row["answers"][0] for row in rows], golds) == pytest.approx(
        {"exact_match": 100.0, "f1": 100.0})
    quoted = [f" '{row['answers'][0]}' " for row in rows]
    assert metrics.qa_scores(quoted, golds)["exact_match"] == pytest.approx(100.0)
    # Partial answers (first half of the gold): our F1 equals the reference procedure row by row.
    partial = [row["answers"][0][: max(1, len(row["answers"][0]) // 2)] for row in rows]
    for prediction, answers in zip(partial, golds):
        expected = max(_korquad_reference_f1(prediction, gold) for gold in answers)
        assert max(metrics.char_f1(prediction, gold) for gold in answers) == pytest.approx(expected)
    # Copying the whole question+context is a poor answer: low precision, so low F1.
    assert metrics.qa_scores([row["input"] for row in rows], golds)["f1"] < 10.0


# ---------------------------------------------------------------- perplexity, baselines


def test_perplexity_from_summed_nll():
    assert metrics.perplexity(0.0, 5) == pytest.approx(1.0)
    assert metrics.perplexity(4 * math.log(10.0), 4) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="n_tokens=0"):
        metrics.perplexity(1.0, 0)


def test_lead_sentence_and_copy_input_baselines():
    dialogue = "A: 내일 회의 몇 시에요? 알려 주세요. B: 오후 2시입니다."
    assert lead_sentence(dialogue) == "내일 회의 몇 시에요?"
    assert lead_sentence("첫 문장입니다. 두 번째 문장입니다.") == "첫 문장입니다."
    assert lead_sentence("") == ""
    systems = baseline_predictions("dialogue_summarization", [dialogue])
    assert systems == {"copy_input": [dialogue], "lead_sentence": ["내일 회의 몇 시에요?"]}
    assert set(baseline_predictions("qa_generation", ["질문: x"])) == {"copy_input"}


# ---------------------------------------------------------------- BERTScore (local model only)


def test_bertscore_with_a_local_model(tiny_bert_dir):
    scores = metrics.bertscore(["내일 회의는 오후 2시입니다.", ""], ["내일 회의는 오후 2시입니다.", "오늘 날씨"],
                               tiny_bert_dir, device="cpu")
    # Identical pair: every token matches itself (cosine 1) -> 100; the empty prediction -> 0.
    assert scores["bertscore_f1"] == pytest.approx(50.0, abs=1e-3)
    assert scores["bertscore_precision"] == pytest.approx(50.0, abs=1e-3)


def test_bertscore_rejects_a_non_local_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        metrics.bertscore(["가"], ["가"], tmp_path / "bert-base-multilingual-cased")
