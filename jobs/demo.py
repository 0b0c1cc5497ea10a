"""`make demo`: the main job on the embedded default, end to end, on a laptop CPU.

prepare the bundled corpus -> train the tiny config with Ray Train (2 DDP workers, gloo)
-> evaluate the held-out split -> register the model in MLflow -> print the per-task metric
table and the model's answers to the user's example inputs.

Every run gets a fresh name (a re-used name would resume the earlier run instead).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from multi_task_kobart.config import load_config
from multi_task_kobart.tasks import AUTO, EXAMPLE_INPUTS
from multi_task_kobart.training.trainer import TrainingResult, run_training


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
    import mlflow

    from multi_task_kobart import tracking
    from multi_task_kobart.evaluation.report import ARTIFACT_DIR, REPORT_MD

    if result.mlflow_run_id is None:
        return "(no MLflow run: tracking was disabled)"
    tracking.configure(tracking_uri)
    local = mlflow.artifacts.download_artifacts(run_id=result.mlflow_run_id,
                                                artifact_path=f"{ARTIFACT_DIR}/{REPORT_MD}")
    return Path(local).read_text(encoding="utf-8")


def show_examples(checkpoint: str) -> None:
    """Generate for the user's example inputs, with the task given and with task="auto"."""
    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.tokenizer import encode_sources, load_tokenizer

    model = MultiTaskKoBART.from_pretrained(checkpoint)
    tokenizer = load_tokenizer(checkpoint)
    for task, texts in EXAMPLE_INPUTS.items():
        ids, _ = encode_sources(tokenizer, list(texts), max_length=128)
        for text, source in zip(texts, ids):
            batch = {"input_ids": _tensor([source])}
            output = model.generate(**batch, task=task, num_beams=4, max_new_tokens=40)
            routed = model.predict_task(**batch)[0]
            answer = tokenizer.decode(output[0], skip_special_tokens=True)
            print(f"[{task}] {text}\n    -> {answer}\n    (router with task={AUTO!r} picks: {routed})")


def _tensor(rows: list[list[int]]):
    import torch

    return torch.tensor(rows, dtype=torch.long)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    cfg = load_config(args.config, [f"name={name}", *args.overrides])
    banner(f"training {cfg.run_name}: {cfg.scaling.num_workers} Ray Train workers, "
           f"strategy {cfg.training.strategy}, {cfg.training.max_steps} steps")
    started = time.perf_counter()
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
          "make serve   # HTTP endpoint for the registered model (MLflow scoring server until the Ray Serve app lands)\n"
          "ray job submit --working-dir . -- python jobs/train.py --config configs/kobart-base.yaml"
          "   # GPU cluster (see cluster.yaml)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
