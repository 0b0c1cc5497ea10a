"""`make demo`: the main job on the embedded default, end to end, on a laptop CPU.

prepare the bundled corpus -> train the tiny config with Ray Train (2 DDP workers, gloo)
-> evaluate the held-out split -> register the model in MLflow -> print the per-task metric
table and the model's answers to the user's example inputs.

Every run gets a fresh name (a re-used name would resume the earlier run instead). The
examples are decoded with ``generation.DEFAULT_GENERATION``, the settings that the evaluation and
the served model use too.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from multi_task_kobart.cli import user_errors
from multi_task_kobart.config import load_config
from multi_task_kobart.data.validation import DataError
from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
from multi_task_kobart.tasks import AUTO, EXAMPLE_INPUTS

if TYPE_CHECKING:
    from multi_task_kobart.training.driver import TrainingResult

#: Longest example input, in tokens (the user's examples are one short sentence each).
EXAMPLE_MAX_TOKENS = 128


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml", help="YAML experiment config")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a config value (repeatable)")
    return parser.parse_args(argv)


def banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def evaluation_table(result: TrainingResult, tracking_uri: str | None) -> str:
    """The held-out evaluation table that the training run logged to MLflow."""
    from multi_task_kobart import tracking
    from multi_task_kobart.evaluation.report import ARTIFACT_DIR, REPORT_MD

    if result.mlflow_run_id is None:
        return "(no MLflow run: tracking was disabled)"
    local = tracking.download_run_artifact(result.mlflow_run_id, f"{ARTIFACT_DIR}/{REPORT_MD}",
                                           tracking_uri=tracking_uri)
    return local.read_text(encoding="utf-8")


def example_answers(checkpoint: str | Path,
                    settings: GenerationSettings = DEFAULT_GENERATION) -> list[dict[str, str | None]]:
    """The model's answers to the user's example inputs: one batch per task, as the pyfunc does.

    Each answer carries the router's pick for ``task="auto"`` (None when the model has no router).
    """
    import torch

    from multi_task_kobart.data.batching import pad_sources
    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.tokenizer import encode_sources, load_tokenizer

    model = MultiTaskKoBART.from_pretrained(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    answers = []
    for task, texts in EXAMPLE_INPUTS.items():
        ids, _ = encode_sources(tokenizer, list(texts), max_length=EXAMPLE_MAX_TOKENS)
        input_ids, attention_mask = pad_sources(ids, tokenizer.pad_token_id)
        with torch.inference_mode():
            output = model.generate(input_ids=input_ids, attention_mask=attention_mask, task=task,
                                    **settings.kwargs())
            routed = (model.predict_task(input_ids, attention_mask) if model.router is not None
                      else [None] * len(texts))
        for text, answer, pick in zip(texts, tokenizer.batch_decode(output, skip_special_tokens=True),
                                      routed):
            answers.append({"task": task, "input": text, "answer": answer.strip(), "routed": pick})
    return answers


def show_examples(checkpoint: str | Path) -> None:
    """Print the answers to the user's example inputs, with the task given and with task="auto"."""
    print(f"decoding: {DEFAULT_GENERATION}")
    for row in example_answers(checkpoint):
        print(f"[{row['task']}] {row['input']}\n    -> {row['answer']}\n"
              f"    (router with task={AUTO!r} picks: {row['routed'] or 'no router'})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    with user_errors(ValueError, FileNotFoundError):
        cfg = load_config(args.config, [f"name={name}", *args.overrides])
    # Imported only now: torch and Ray take seconds to import, and a mistake in the config
    # above is answered before that.
    from multi_task_kobart.training.driver import resolve_paths, run_training

    # Resolved here as well as in run_training, so the demo reads the store the workers wrote to.
    with user_errors(ValueError):
        cfg = resolve_paths(cfg)
    banner(f"training {cfg.run_name}: {cfg.scaling.num_workers} Ray Train workers, "
           f"strategy {cfg.training.strategy}, {cfg.training.max_steps} steps")
    started = time.perf_counter()
    with user_errors(DataError):  # a data.source given with --set
        result = run_training(cfg)
    banner(f"trained in {time.perf_counter() - started:.0f}s; checkpoint {result.checkpoint_path}")
    banner("held-out evaluation (bundled corpus, test split)")
    print(evaluation_table(result, cfg.tracking.tracking_uri))
    if result.registered_model:
        print(f"registered in MLflow as {result.registered_model} (run {result.mlflow_run_id})")
    banner("the user's example inputs")
    show_examples(result.checkpoint_path)
    banner("next")
    print("make ui      # MLflow UI on the local store (runs, metrics, registered model)\n"
          "make serve   # Ray Serve on http://127.0.0.1:8000: POST /v1/generate, the playground at /\n"
          "ray job submit --working-dir . -- python jobs/train.py --config configs/kobart-base.yaml --root \"$PWD\""
          "   # GPU cluster (see cluster.yaml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
