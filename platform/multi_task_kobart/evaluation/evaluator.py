"""Evaluate a MultiTaskKoBART on examples of each task: generate, score, compare with baselines.

``evaluate_model`` is what both the evaluation job and the end of training call. Per task it
generates in batches with the given decoding settings, computes the task's metrics (see
``TASK_METRICS``), computes perplexity from the summed token loss on the targets, and scores
the baselines with the same metrics. The result is a plain JSON-ready dict (see ``report.py``).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from multi_task_kobart.data.batching import pad_labels, pad_sources
from multi_task_kobart.evaluation import metrics
from multi_task_kobart.evaluation.baselines import baseline_predictions
from multi_task_kobart.evaluation.formality import formal_share
from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
from multi_task_kobart.model import token_cross_entropy
from multi_task_kobart.tasks import (DIALOGUE_SUMMARIZATION, QA_GENERATION, ROLE_GENERATION,
                                     STYLE_TRANSFER, TASKS, validate_task)
from multi_task_kobart.tokenizer import LABEL_PAD

N_SAMPLES = 5
#: What each task is judged by (the user's design document), perplexity aside.
TASK_METRICS: dict[str, tuple[str, ...]] = {
    STYLE_TRANSFER: ("bleu", "bleu_word", "chrf", "style_accuracy"),
    DIALOGUE_SUMMARIZATION: ("rouge1", "rouge2", "rougeL", "rougeL_char", "bertscore_f1", "chrf"),
    ROLE_GENERATION: ("bleu", "chrf", "rougeL"),
    QA_GENERATION: ("exact_match", "f1"),
}
BERTSCORE_NOT_CONFIGURED = (
    "no local BERTScore model configured (pass --bertscore-model PATH to a saved Hugging Face "
    "encoder); models cannot be downloaded here because no model hub is reachable"
)


def score_texts(task: str, predictions: Sequence[str], rows: Sequence[Mapping[str, Any]], *,
                bertscore_model: str | Path | None = None) -> dict[str, float]:
    """The metrics of ``task`` (TASK_METRICS) for ``predictions`` against ``rows``' targets."""
    references = [str(row["target"]) for row in rows]
    scores: dict[str, float] = {}
    if task == STYLE_TRANSFER:
        scores["style_accuracy"] = formal_share(list(predictions))
    if task in (STYLE_TRANSFER, ROLE_GENERATION):
        scores["bleu"] = metrics.bleu(predictions, references)
    if task == STYLE_TRANSFER:
        scores["bleu_word"] = metrics.bleu(predictions, references, tokenize=metrics.BLEU_WORD_TOKENIZE)
    if task == DIALOGUE_SUMMARIZATION:
        scores.update(metrics.rouge(predictions, references, level="word"))
        scores["rougeL_char"] = metrics.rouge(predictions, references, level="char")["rougeL"]
        if bertscore_model is not None:
            scores.update(metrics.bertscore(predictions, references, bertscore_model))
    if task == ROLE_GENERATION:
        scores["rougeL"] = metrics.rouge(predictions, references)["rougeL"]
    if task != QA_GENERATION:
        scores["chrf"] = metrics.chrf(predictions, references)
    else:
        scores.update(metrics.qa_scores(predictions, [_gold_answers(row) for row in rows]))
    return scores


def _gold_answers(row: Mapping[str, Any]) -> list[str]:
    """All gold answers of a QA row (``answers`` when present, else just the target)."""
    answers = row.get("answers")
    if answers is None or len(answers) == 0:
        return [str(row["target"])]
    return [str(answer) for answer in answers]


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _pad_id(model: Any, tokenizer: Any) -> int:
    pad_id = getattr(tokenizer, "pad_token_id", None)
    return int(pad_id if pad_id is not None else model.config.pad_token_id)


def _encode_rows(tokenizer: Any, rows: Sequence[Mapping[str, Any]], max_source_length: int,
                 max_target_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """Source and label ids: the prepared ones when rows carry them, else freshly encoded."""
    if all(row.get("input_ids") is not None and row.get("labels") is not None for row in rows):
        return ([list(map(int, row["input_ids"])) for row in rows],
                [[int(t) for t in row["labels"] if int(t) != LABEL_PAD] for row in rows])
    from multi_task_kobart.tokenizer import encode_sources, encode_targets

    sources, _ = encode_sources(tokenizer, [str(row["input"]) for row in rows], max_source_length)
    labels, _ = encode_targets(tokenizer, [str(row["target"]) for row in rows], max_target_length)
    return sources, labels


def _batches(n: int, batch_size: int) -> list[range]:
    return [range(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


@torch.no_grad()
def generate_texts(model: Any, tokenizer: Any, task: str, source_ids: Sequence[Sequence[int]], *,
                   batch_size: int, generation_kwargs: Mapping[str, Any],
                   progress: tqdm | None = None) -> list[str]:
    """Decoded generations of ``task``'s decoder for each source, in input order."""
    device, pad_id = _model_device(model), _pad_id(model, tokenizer)
    # Longest sources first: batches of similar length waste less padding and generation time.
    order = sorted(range(len(source_ids)), key=lambda i: -len(source_ids[i]))
    outputs: list[str] = [""] * len(source_ids)
    for batch in _batches(len(order), batch_size):
        indices = [order[i] for i in batch]
        input_ids, attention_mask = pad_sources([source_ids[i] for i in indices], pad_id)
        generated = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                   task=task, **generation_kwargs)
        texts = tokenizer.batch_decode(generated, skip_special_tokens=True)
        for index, text in zip(indices, texts):
            outputs[index] = text.strip()
        if progress is not None:
            progress.update(len(indices))
    return outputs


@torch.no_grad()
def target_nll(model: Any, task: str, source_ids: Sequence[Sequence[int]],
               label_ids: Sequence[Sequence[int]], *, batch_size: int, pad_id: int) -> tuple[float, int]:
    """Summed token negative log-likelihood of the targets and the number of target tokens."""
    device = _model_device(model)
    total_nll, n_tokens = 0.0, 0
    for batch in _batches(len(source_ids), batch_size):
        input_ids, attention_mask = pad_sources([source_ids[i] for i in batch], pad_id)
        labels = pad_labels([label_ids[i] for i in batch]).to(device)
        outputs = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                        task=task, labels=labels)
        total_nll += float(token_cross_entropy(outputs.logits, labels, reduction="sum"))
        n_tokens += int((labels != LABEL_PAD).sum())
    return total_nll, n_tokens


def _max_lengths(model: Any, max_source_length: int | None,
                 max_target_length: int | None) -> tuple[int, int]:
    positions = int(getattr(model.config, "max_position_embeddings", 1024))
    return min(max_source_length or positions, positions), min(max_target_length or positions, positions)


def evaluate_task(model: Any, tokenizer: Any, task: str, rows: Sequence[Mapping[str, Any]], *,
                  batch_size: int, generation_kwargs: Mapping[str, Any],
                  bertscore_model: str | Path | None, progress: tqdm | None,
                  max_lengths: tuple[int, int]) -> dict[str, Any]:
    """The report section of one task: metrics, baselines, samples, predictions, timings."""
    source_ids, label_ids = _encode_rows(tokenizer, rows, *max_lengths)
    started = time.perf_counter()
    predictions = generate_texts(model, tokenizer, task, source_ids, batch_size=batch_size,
                                 generation_kwargs=generation_kwargs, progress=progress)
    generation_seconds = time.perf_counter() - started
    scores = score_texts(task, predictions, rows, bertscore_model=bertscore_model)
    total_nll, n_tokens = target_nll(model, task, source_ids, label_ids, batch_size=batch_size,
                                     pad_id=_pad_id(model, tokenizer))
    scores["perplexity"] = metrics.perplexity(total_nll, n_tokens)
    section: dict[str, Any] = {
        "n_examples": len(rows),
        "metrics": scores,
        "baselines": {name: score_texts(task, texts, rows, bertscore_model=bertscore_model)
                      for name, texts in baseline_predictions(task, [str(r["input"]) for r in rows]).items()},
        "target_tokens": n_tokens,
        "generation_seconds": round(generation_seconds, 3),
        "skipped": {},
    }
    if task == STYLE_TRANSFER:
        # The classifier's verdict on the gold targets: the ceiling style accuracy can reach.
        section["reference_style_accuracy"] = formal_share([str(row["target"]) for row in rows])
    if task == DIALOGUE_SUMMARIZATION and bertscore_model is None:
        section["skipped"]["bertscore"] = BERTSCORE_NOT_CONFIGURED
    section["predictions"] = [
        {"id": row.get("id", index), "input": row["input"], "target": row["target"], "prediction": text}
        for index, (row, text) in enumerate(zip(rows, predictions))]
    section["samples"] = section["predictions"][:N_SAMPLES]
    return section


def decoding_kwargs(generation: GenerationSettings | Mapping[str, Any] | None) -> dict[str, Any]:
    """``model.generate`` kwargs: :data:`DEFAULT_GENERATION` with ``generation``'s values on top."""
    if isinstance(generation, GenerationSettings):
        return generation.kwargs()
    merged = {**DEFAULT_GENERATION.kwargs(), **dict(generation or {})}
    # The shared settings are checked by GenerationSettings (clear errors before any generation);
    # the rest (length_penalty, do_sample, ...) go to transformers as given.
    GenerationSettings(**{key: merged[key] for key in DEFAULT_GENERATION.kwargs()})
    return merged


def _check_inputs(examples_by_task: Mapping[str, Sequence[Mapping[str, Any]]], batch_size: int,
                  limit: int | None, bertscore_model: str | Path | None,
                  generation_kwargs: Mapping[str, Any]) -> None:
    for task in examples_by_task:
        validate_task(task)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if generation_kwargs.get("num_return_sequences", 1) != 1:
        raise ValueError("evaluation scores one output per input; num_return_sequences must be 1, "
                         f"got {generation_kwargs['num_return_sequences']}")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for all rows), got {limit}")
    # Fail before minutes of generation, not after, when the BERTScore model is not usable.
    if bertscore_model is not None and not (Path(bertscore_model) / "config.json").is_file():
        raise FileNotFoundError(
            f"bertscore_model {str(bertscore_model)!r} is not a local model directory with "
            "config.json; pass a saved Hugging Face encoder directory or leave it unset")


def evaluate_model(model: Any, tokenizer: Any, examples_by_task: Mapping[str, Sequence[Mapping[str, Any]]],
                   *, batch_size: int = 16,
                   generation_kwargs: GenerationSettings | Mapping[str, Any] | None = None,
                   limit: int | None = None, bertscore_model: str | Path | None = None,
                   device: str | torch.device | None = None, progress: bool = True,
                   max_source_length: int | None = None, max_target_length: int | None = None,
                   model_name: str | None = None) -> dict[str, Any]:
    """Evaluate ``model`` on ``{task: rows}`` (rows: ``input``, ``target``, optional ``answers``,
    ``id``, ``input_ids``, ``labels``) and return the report dict.

    ``generation_kwargs`` (a ``GenerationSettings`` or a dict) go to ``model.generate``; settings
    they leave out take :data:`DEFAULT_GENERATION`'s values, as everywhere the model generates. ``limit``
    keeps the first N rows of each task. ``device`` moves the model there; by default it stays
    where it is. The model's train/eval mode is restored afterwards.
    """
    generation = decoding_kwargs(generation_kwargs)
    _check_inputs(examples_by_task, batch_size, limit, bertscore_model, generation)
    if device is not None:
        model.to(device)
    was_training = model.training
    model.eval()
    tasks = [task for task in TASKS if examples_by_task.get(task)]
    rows_by_task = {task: list(examples_by_task[task])[:limit] for task in tasks}
    lengths = _max_lengths(model, max_source_length, max_target_length)
    bar = tqdm(total=sum(map(len, rows_by_task.values())), desc="generating", unit="ex",
               disable=not progress)
    sections = {}
    try:
        for task in tasks:
            bar.set_description(f"generating {task}")
            sections[task] = evaluate_task(model, tokenizer, task, rows_by_task[task], batch_size=batch_size,
                                           generation_kwargs=generation, bertscore_model=bertscore_model,
                                           progress=bar, max_lengths=lengths)
    finally:
        bar.close()
        model.train(was_training)
    return _assemble(sections, generation, batch_size, limit, bertscore_model, model_name,
                     _model_device(model))


def _assemble(sections: dict[str, Any], generation: dict[str, Any], batch_size: int,
              limit: int | None, bertscore_model: str | Path | None, model_name: str | None,
              device: torch.device) -> dict[str, Any]:
    return {
        "model": model_name,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": {
            "batch_size": batch_size,
            "generation": generation,
            "limit": limit,
            "device": str(device),
            "bleu_tokenize": metrics.BLEU_TOKENIZE,
            "bleu_word_tokenize": metrics.BLEU_WORD_TOKENIZE,
            "rouge_tokenizer": "KoreanRougeTokenizer: eojeol (whitespace) tokens; rougeL_char: syllables",
            "qa_metric": "KorQuAD 1.0 official normalisation; F1 over characters, best over gold answers",
            "style_classifier": "rule-based sentence-final ending classifier (evaluation/formality.py)",
            "bertscore_model": str(bertscore_model) if bertscore_model is not None else None,
            "scale": "scores are percentages 0-100; perplexity is exp(summed NLL / target tokens)",
        },
        "tasks": sections,
    }

