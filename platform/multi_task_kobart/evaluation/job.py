"""The evaluation job: resolve the model, load data, evaluate, write the report, log to MLflow.

``jobs/evaluate.py`` only calls :func:`main`; everything here is importable and testable::

    python jobs/evaluate.py --model runs/tiny/checkpoint --data data/prepared/tiny --split test
    python jobs/evaluate.py --model models:/multi-task-kobart-tiny@candidate \
        --data ../shared/realdata --limit 20 --num-beams 4 --mlflow-run-id <run id>
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from multi_task_kobart.generation import DEFAULT_GENERATION, GenerationSettings
from multi_task_kobart.tasks import TASKS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jobs/evaluate.py", description="Evaluate a MultiTaskKoBART checkpoint on every task.")
    parser.add_argument("--model", required=True,
                        help="checkpoint dir, or MLflow URI (models:/name@alias, models:/name/3, runs:/id/path)")
    parser.add_argument("--data", required=True, nargs="+",
                        help="a prepared dataset dir, or seed files/folders ({task,input,target} JSONL/CSV/...)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--encoding", default="utf-8",
                        help="text encoding of seed files given to --data, e.g. cp949 (default: utf-8)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=None, help="default: every task in the data")
    parser.add_argument("--limit", type=int, default=None, help="at most N rows per task (quick looks)")
    parser.add_argument("--batch-size", type=int, default=16)
    defaults = DEFAULT_GENERATION
    parser.add_argument("--num-beams", type=int, default=defaults.num_beams,
                        help=f"beam width, 1 = greedy (default: {defaults.num_beams})")
    parser.add_argument("--max-new-tokens", type=int, default=defaults.max_new_tokens,
                        help=f"default: {defaults.max_new_tokens}")
    parser.add_argument("--no-repeat-ngram-size", type=int, default=defaults.no_repeat_ngram_size,
                        help=f"no n-gram of this size twice in an output, 0 = off "
                             f"(default: {defaults.no_repeat_ngram_size})")
    parser.add_argument("--repetition-penalty", type=float, default=defaults.repetition_penalty,
                        help=f"logit divisor for tokens already generated, 1.0 = off "
                             f"(default: {defaults.repetition_penalty})")
    parser.add_argument("--length-penalty", type=float, default=None,
                        help="beam search length penalty (default: transformers')")
    parser.add_argument("--max-source-length", type=int, default=None,
                        help="default: the checkpoint's training setting, else the model's positions")
    parser.add_argument("--max-target-length", type=int, default=None)
    parser.add_argument("--tokenizer", default=None,
                        help="tokenizer path (default: the one saved in the checkpoint, else the bundled one)")
    parser.add_argument("--bertscore-model", default=None,
                        help="local Hugging Face encoder dir for BERTScore (skipped when absent)")
    parser.add_argument("--out", default="eval_report", help="output folder (default: ./eval_report)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--tracking-uri", default=None,
                        help="MLflow store (default: MLFLOW_TRACKING_URI, else the project's mlruns/mlflow.db)")
    parser.add_argument("--mlflow-run-id", default=None, help="log metrics and files to this MLflow run")
    parser.add_argument("--mlflow-experiment", default=None,
                        help="log to a new run in this experiment (when no --mlflow-run-id is given)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Decoding settings passed to ``model.generate``; ``GenerationSettings`` checks the values."""
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens, num_beams=args.num_beams,
                                  no_repeat_ngram_size=args.no_repeat_ngram_size,
                                  repetition_penalty=args.repetition_penalty)
    kwargs = settings.kwargs()
    if args.length_penalty is not None:
        kwargs["length_penalty"] = args.length_penalty
    return kwargs


def _training_lengths(checkpoint: Path) -> tuple[int | None, int | None]:
    """The max source/target lengths the checkpoint was trained with, if it saved them."""
    from multi_task_kobart.training.checkpoint import TRAIN_CONFIG

    path = checkpoint / TRAIN_CONFIG
    if not path.is_file():
        return None, None
    data = json.loads(path.read_text(encoding="utf-8")).get("data", {})
    return data.get("max_source_length"), data.get("max_target_length")


def load_model_and_tokenizer(model: str, tokenizer: str | None, tracking_uri: str | None,
                             download_dir: Path, device: str | None) -> tuple[Any, Any, Path]:
    """The model (on ``device``), its tokenizer and the local checkpoint folder."""
    import torch

    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.tokenizer import load_tokenizer
    from multi_task_kobart.tracking import resolve_model_dir

    checkpoint = resolve_model_dir(model, tracking_uri=tracking_uri, dst_dir=download_dir)
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    loaded = MultiTaskKoBART.from_pretrained(checkpoint, device=device)
    if tokenizer is None and (checkpoint / "tokenizer.json").is_file():
        tokenizer = str(checkpoint)
    return loaded, load_tokenizer(tokenizer), checkpoint


def _log(report: dict[str, Any], paths: dict[str, Path], args: argparse.Namespace) -> str | None:
    """Log to ``--mlflow-run-id``, or to a new run in ``--mlflow-experiment``; None if neither."""
    if args.mlflow_run_id is None and args.mlflow_experiment is None:
        return None
    from multi_task_kobart import tracking
    from multi_task_kobart.config import TrackingConfig
    from multi_task_kobart.evaluation.report import log_report_to_mlflow

    if args.mlflow_run_id is not None:
        return log_report_to_mlflow(report, paths, run_id=args.mlflow_run_id,
                                    tracking_uri=args.tracking_uri)
    cfg = TrackingConfig(tracking_uri=args.tracking_uri, experiment_name=args.mlflow_experiment)
    with tracking.start_run(cfg, "evaluate", tags={"model": str(report.get("model"))}) as run:
        return log_report_to_mlflow(report, paths, run_id=run.info.run_id,
                                    tracking_uri=args.tracking_uri)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The job body; returns ``{"report": ..., "paths": ..., "run_id": ...}``."""
    from multi_task_kobart.evaluation.evaluator import evaluate_model
    from multi_task_kobart.evaluation.examples import load_examples
    from multi_task_kobart.evaluation.report import write_report
    from multi_task_kobart.tokenizer import tokenizer_fingerprint

    kwargs = generation_kwargs(args)
    with tempfile.TemporaryDirectory(prefix="mtk-eval-model-") as download_dir:
        model, tokenizer, checkpoint = load_model_and_tokenizer(
            args.model, args.tokenizer, args.tracking_uri, Path(download_dir), args.device)
        loaded = load_examples(args.data if len(args.data) > 1 else args.data[0], split=args.split,
                               tasks=args.tasks, tokenizer_fingerprint=tokenizer_fingerprint(tokenizer),
                               encoding=args.encoding)
        trained_source, trained_target = _training_lengths(checkpoint)
        report = evaluate_model(
            model, tokenizer, loaded.by_task, batch_size=args.batch_size, generation_kwargs=kwargs,
            limit=args.limit, bertscore_model=args.bertscore_model, progress=not args.no_progress,
            max_source_length=args.max_source_length or trained_source,
            max_target_length=args.max_target_length or trained_target, model_name=args.model)
    report["data"] = loaded.source
    paths = write_report(report, args.out)
    return {"report": report, "paths": paths, "run_id": _log(report, paths, args)}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result = run(args)
    print((Path(args.out) / "report.md").read_text(encoding="utf-8"))
    print(f"report files in {Path(args.out).resolve()}")
    if result["run_id"]:
        print(f"logged to MLflow run {result['run_id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
