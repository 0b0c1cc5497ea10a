"""Text metrics that are correct on Korean: BLEU/chrF, ROUGE, KorQuAD EM/F1, perplexity, BERTScore.

Scale: every score is a percentage in [0, 100] (sacrebleu's convention, applied to ROUGE,
BERTScore and EM/F1 too) so one report table reads the same way; perplexity is the raw value.

Tokenization choices, and why:
- BLEU: sacrebleu ``tokenize="char"`` (every non-space character is a token, n-grams run
  across spaces). Korean words are agglutinative (서울의 / 서울은 / 서울에서 share a stem but
  are different whitespace words) and spacing (띄어쓰기) varies between writers, so
  syllable-level n-grams measure content overlap without punishing particles and spacing.
  sacrebleu's own Korean tokenizer (``ko-mecab``) needs MeCab and ``flores200``/``spm`` needs
  sentencepiece plus a downloaded model; neither is available offline here. A word-level BLEU
  (``13a``: whitespace words, punctuation split off) is reported beside it for comparison.
- chrF: sacrebleu's default character 6-gram F-score (beta 2), language-agnostic.
- ROUGE: rouge-score with our own tokenizer. Its default tokenizer replaces every non
  ``[a-z0-9]`` character with a space, so Hangul vanishes and Korean scores 0. Ours keeps
  Hangul syllables, Hangul jamo, Latin letters and digits, at word (eojeol) or syllable level.
- EM/F1: the KorQuAD 1.0 official evaluation: normalise (drop quotes/brackets/ASCII
  punctuation, lower-case, collapse whitespace); EM compares normalised strings; F1 is over
  the characters of the normalised string with spaces removed; the best over all gold answers.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Literal

from rouge_score import rouge_scorer, tokenizers
from sacrebleu.metrics import BLEU, CHRF

#: The BLEU tokenizer stated in every report, and the word-level one reported beside it.
BLEU_TOKENIZE = "char"
BLEU_WORD_TOKENIZE = "13a"
RougeLevel = Literal["word", "char"]
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check_pairs(predictions: Sequence[str], references: Sequence[object]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references must have the same length, got {len(predictions)} "
            f"predictions and {len(references)} references"
        )


def bleu(predictions: Sequence[str], references: Sequence[str], tokenize: str = BLEU_TOKENIZE) -> float:
    """Corpus BLEU (0-100) of ``predictions`` against one reference each; 0.0 for no rows."""
    _check_pairs(predictions, references)
    if not predictions:
        return 0.0
    # sacrebleu's default 'exp' smoothing keeps a corpus without any 4-gram match above 0.
    metric = BLEU(tokenize=tokenize)
    return float(metric.corpus_score(list(predictions), [list(references)]).score)


def chrf(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100, character 6-grams, beta 2); 0.0 for no rows."""
    _check_pairs(predictions, references)
    if not predictions:
        return 0.0
    return float(CHRF().corpus_score(list(predictions), [list(references)]).score)


class KoreanRougeTokenizer(tokenizers.Tokenizer):
    """rouge-score tokenizer that keeps Hangul: eojeol (``"word"``) or syllable (``"char"``) tokens."""

    # Everything that is not a Hangul syllable/jamo, a Latin letter or a digit separates tokens.
    _SEPARATORS = re.compile(r"[^0-9a-z\uac00-\ud7a3\u1100-\u11ff\u3130-\u318f]+")

    def __init__(self, level: RougeLevel = "word") -> None:
        if level not in ("word", "char"):
            raise ValueError(f"ROUGE tokenizer level must be 'word' or 'char', got {level!r}")
        self.level = level

    def tokenize(self, text: str) -> list[str]:
        words = self._SEPARATORS.sub(" ", text.lower()).split()
        if self.level == "word":
            return words
        return [char for word in words for char in word]


def rouge(
    predictions: Sequence[str], references: Sequence[str], level: RougeLevel = "word"
) -> dict[str, float]:
    """Mean ROUGE-1/2/L F-measures (0-100) with the Hangul-keeping tokenizer at ``level``."""
    _check_pairs(predictions, references)
    if not predictions:
        return {name: 0.0 for name in ROUGE_TYPES}
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=KoreanRougeTokenizer(level))
    totals = Counter()
    for prediction, reference in zip(predictions, references):
        # rouge-score takes (target, prediction) in that order.
        for name, score in scorer.score(reference, prediction).items():
            totals[name] += score.fmeasure
    return {name: 100.0 * totals[name] / len(predictions) for name in ROUGE_TYPES}


# Characters KorQuAD's script turns into spaces before dropping ASCII punctuation.
_KORQUAD_SPACED = re.compile("['\"《》<>〈〉()‘’]")
_ASCII_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """KorQuAD 1.0 answer normalisation: quotes/brackets to spaces, lower-case, no ASCII
    punctuation, whitespace collapsed to single spaces."""
    text = _KORQUAD_SPACED.sub(" ", text).lower()
    text = "".join(char for char in text if char not in _ASCII_PUNCTUATION)
    return " ".join(text.split())


def exact_match(prediction: str, gold: str) -> bool:
    """KorQuAD exact match: the normalised strings are equal (spaces between words count)."""
    return normalize_answer(prediction) == normalize_answer(gold)


def char_f1(prediction: str, gold: str) -> float:
    """KorQuAD character-level F1 (0-1) over the normalised strings without spaces.

    As in the official script, no shared character means 0.0, even for two empty strings.
    """
    predicted_chars = list(normalize_answer(prediction).replace(" ", ""))
    gold_chars = list(normalize_answer(gold).replace(" ", ""))
    shared = sum((Counter(predicted_chars) & Counter(gold_chars)).values())
    if shared == 0:
        return 0.0
    precision = shared / len(predicted_chars)
    recall = shared / len(gold_chars)
    return 2 * precision * recall / (precision + recall)


def qa_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """Mean EM and F1 (0-100), each the best over a row's gold answers (KorQuAD/SQuAD style)."""
    _check_pairs(predictions, answers)
    if not predictions:
        return {"exact_match": 0.0, "f1": 0.0}
    em_total = f1_total = 0.0
    for index, (prediction, golds) in enumerate(zip(predictions, answers)):
        if isinstance(golds, str) or not golds:
            raise ValueError(f"row {index}: answers must be a non-empty list of strings, got {golds!r}")
        em_total += max(float(exact_match(prediction, gold)) for gold in golds)
        f1_total += max(char_f1(prediction, gold) for gold in golds)
    return {"exact_match": 100.0 * em_total / len(predictions), "f1": 100.0 * f1_total / len(predictions)}


def perplexity(total_nll: float, n_tokens: int) -> float:
    """exp(summed token negative log-likelihood / token count)."""
    if n_tokens <= 0:
        raise ValueError(f"perplexity needs at least one target token, got n_tokens={n_tokens}")
    return math.exp(total_nll / n_tokens)


def bertscore(
    predictions: Sequence[str],
    references: Sequence[str],
    model_path: str | Path,
    *,
    num_layers: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
) -> dict[str, float]:
    """Mean BERTScore precision/recall/F1 (0-100) with a local encoder at ``model_path``.

    ``num_layers`` defaults to all layers of that model. A pair with an empty side scores 0:
    bert-score cannot encode an empty string with transformers 5 tokenizers, and an empty
    output shares no meaning with its reference anyway.
    """
    _check_pairs(predictions, references)
    scorer = _bertscorer(Path(model_path), num_layers, batch_size, device)
    keep = [i for i, (p, r) in enumerate(zip(predictions, references)) if p.strip() and r.strip()]
    sums = {"bertscore_precision": 0.0, "bertscore_recall": 0.0, "bertscore_f1": 0.0}
    if keep:
        scores = scorer.score([predictions[i] for i in keep], [references[i] for i in keep])
        for name, values in zip(sums, scores):
            sums[name] = float(values.sum())
    n = max(len(predictions), 1)
    return {name: 100.0 * total / n for name, total in sums.items()}


@lru_cache(maxsize=2)
def _bertscorer(model_path: Path, num_layers: int | None, batch_size: int, device: str | None):
    """A ``bert_score.BERTScorer`` on a local model directory (no hub access).

    Cached: one evaluation scores the model and each baseline, and loading the encoder is the
    slow part.
    """
    if not (model_path / "config.json").is_file():
        raise FileNotFoundError(
            f"BERTScore model {str(model_path)!r} is not a local model directory with config.json; "
            "pass the path of a saved Hugging Face encoder (e.g. a multilingual BERT)"
        )
    from bert_score import BERTScorer
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(model_path)
    layers = num_layers if num_layers is not None else config.num_hidden_layers
    scorer = BERTScorer(model_type=str(model_path), num_layers=layers, batch_size=batch_size, device=device)
    # Tokenizers saved without a length limit report ~1e30, which bert-score passes on as the
    # truncation length and the Rust tokenizer rejects; cap it at the model's positions.
    tokenizer = scorer._tokenizer
    if tokenizer.model_max_length > 100_000:
        tokenizer.model_max_length = getattr(config, "max_position_embeddings", 512)
    return scorer
