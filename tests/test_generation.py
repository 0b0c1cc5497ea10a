"""Default decoding has one home (generation.py), and every place the model generates starts from it.

The demo, the evaluation (library default and job flags), the MLflow pyfunc (its code and its logged
signature) must decode the same input the same way; a place that drifts back to its own constants
(the demo once used 4 beams and 40 tokens, and its QA answers looped) fails here.
"""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import pytest

from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
from multi_task_kobart.tasks import EXAMPLE_INPUTS

PLAIN_GREEDY = GenerationSettings(max_new_tokens=DEFAULT_GENERATION.max_new_tokens, num_beams=1,
                                  no_repeat_ngram_size=0, repetition_penalty=1.0)


def test_settings_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="max_new_tokens=0 and num_beams=1 must both be >= 1"):
        GenerationSettings(max_new_tokens=0)
    with pytest.raises(ValueError, match="no_repeat_ngram_size=-1 must be >= 0"):
        GenerationSettings(no_repeat_ngram_size=-1)
    with pytest.raises(ValueError, match="repetition_penalty=0 must be > 0"):
        GenerationSettings(repetition_penalty=0)


def test_request_params_are_converted_and_checked() -> None:
    settings = DEFAULT_GENERATION.with_params({"num_beams": "2", "repetition_penalty": 1})
    assert settings == DEFAULT_GENERATION.replace(num_beams=2, repetition_penalty=1.0)
    assert isinstance(settings.repetition_penalty, float)
    assert DEFAULT_GENERATION.with_params(None) == DEFAULT_GENERATION
    with pytest.raises(ValueError, match="unknown generation parameter 'temperature'; allowed: max_new_tokens"):
        DEFAULT_GENERATION.with_params({"temperature": 0.7})
    with pytest.raises(ValueError, match="num_beams=1.5 must be a whole number"):
        DEFAULT_GENERATION.with_params({"num_beams": 1.5})
    with pytest.raises(ValueError, match="max_new_tokens='many' is not of type int"):
        DEFAULT_GENERATION.with_params({"max_new_tokens": "many"})


def test_every_entry_point_declares_the_default_settings(demo_module) -> None:
    from multi_task_kobart import tracking
    from multi_task_kobart.evaluation.evaluator import decoding_kwargs
    from multi_task_kobart.evaluation.job import build_parser, generation_kwargs

    defaults = DEFAULT_GENERATION.kwargs()
    assert decoding_kwargs(None) == defaults
    assert decoding_kwargs({"num_beams": 2}) == {**defaults, "num_beams": 2}
    job_args = build_parser().parse_args(["--model", "m", "--data", "d"])
    assert generation_kwargs(job_args) == defaults
    assert inspect.signature(demo_module.example_answers).parameters["settings"].default == DEFAULT_GENERATION
    assert {spec.name: spec.default for spec in tracking.pyfunc_signature().params} == defaults


def test_demo_evaluator_and_pyfunc_give_the_same_answers(tiny_checkpoint, demo_module) -> None:
    from multi_task_kobart.evaluation.evaluator import evaluate_model
    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.serving.mlflow_pyfunc import MultiTaskKoBARTPyfunc
    from multi_task_kobart.tokenizer import load_tokenizer

    demo = demo_module.example_answers(tiny_checkpoint)
    assert [(row["task"], row["input"]) for row in demo] == [
        (task, text) for task, texts in EXAMPLE_INPUTS.items() for text in texts]

    pyfunc = MultiTaskKoBARTPyfunc()
    pyfunc.load_context(SimpleNamespace(artifacts={"checkpoint": str(tiny_checkpoint)}))
    served = pyfunc.predict(None, [{"task": row["task"], "input": row["input"]} for row in demo])

    model, tokenizer = MultiTaskKoBART.from_pretrained(tiny_checkpoint), load_tokenizer(tiny_checkpoint)
    rows = {task: [{"input": text, "target": "."} for text in texts] for task, texts in EXAMPLE_INPUTS.items()}
    report = evaluate_model(model, tokenizer, rows, batch_size=2, progress=False)
    assert report["settings"]["generation"] == DEFAULT_GENERATION.kwargs()
    evaluated = [row["prediction"] for section in report["tasks"].values() for row in section["predictions"]]

    answers = [row["answer"] for row in demo]
    assert all(answers), answers  # words to compare, not empty strings
    assert [text.strip() for text in served] == answers
    assert evaluated == answers
    # The defaults matter for this model: plain greedy decoding answers differently.
    plain = demo_module.example_answers(tiny_checkpoint, PLAIN_GREEDY)
    assert [row["answer"] for row in plain] != answers
