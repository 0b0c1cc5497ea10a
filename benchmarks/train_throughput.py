"""Training throughput: our step vs. what users would otherwise run, side by side in one process.

Baseline: transformers' ``Seq2SeqTrainer`` with its defaults (random order over all four tasks
mixed, ``DataCollatorForSeq2Seq`` padding to the longest row in the batch, default optimizer)
training one ``BartForConditionalGeneration`` of the same dimensions.
Ours: ``MultiTaskKoBART`` trained by ``training.step.train_step`` + ``optimizer_step`` on
per-task, length-aware batches (``data.batching.length_grouped_batches`` + ``collate``).

Same rows, same batch size (examples), fp32 on CPU, the same number of optimizer steps timed
after a warmup. The score is real (non-padding) source + target tokens per second.

Model FLOPs utilisation counts useful FLOPs only (real tokens; padding is waste), against a
matmul peak this script measures itself (a large fp32 ``torch.matmul`` loop):

    FLOPs/step = 6 * (P_enc * S + (P_dec + V * d) * T)
               + 12 * d * (L_enc * sum(s_i^2) + L_dec * sum(t_i^2) + L_dec * sum(s_i * t_i))

with s_i / t_i the real source / target lengths of row i, S = sum(s_i), T = sum(t_i),
P_enc = L_enc * (4 d^2 + 2 d f) and P_dec = L_dec * (8 d^2 + 2 d f) the matmul weights per token
(self-attention, cross-attention and FFN projections), V * d the tied LM head. That is the
usual "6 x params x tokens" (forward 2, backward 4) plus the attention score/value products.

    python benchmarks/train_throughput.py                   # KoBART-base dims (default)
    python benchmarks/train_throughput.py --dims tiny --steps 4 --warmup 1   # seconds
"""

from __future__ import annotations

import argparse
import json
import os
import platform as py_platform
import random
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTK_SHARED_DIR", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results" / "train_throughput.json"
TARGET_RATIO, TARGET_MFU = 1.5, 0.40
LABEL_PAD = -100


# --------------------------------------------------------------------------- data


def load_tokenizer_and_rows(max_rows_per_task: int, seed: int) -> tuple[Any, list[dict], str]:
    """KoBART's tokenizer + ../shared/realdata when present, else the bundled ones."""
    from multi_task_kobart.tasks import TASKS
    from multi_task_kobart.tokenizer import load_tokenizer

    kobart = SHARED / "kobart-tokenizer" / "tokenizer.json"
    tokenizer = load_tokenizer(kobart if kobart.is_file() else None)
    if all((SHARED / "realdata" / f"{task}.jsonl").is_file() for task in TASKS):
        rows = [json.loads(line) for task in TASKS
                for line in (SHARED / "realdata" / f"{task}.jsonl").read_text().splitlines() if line]
        source = "../shared/realdata"
    else:
        from multi_task_kobart.data.corpus import generate_corpus

        rows, source = generate_corpus(seed=seed)["train"], "bundled corpus"
    rng = random.Random(seed)
    rng.shuffle(rows)
    per_task: dict[str, list[dict]] = {task: [] for task in TASKS}
    for row in rows:
        if len(per_task[row["task"]]) < max_rows_per_task:
            per_task[row["task"]].append(row)
    return tokenizer, [row for task in TASKS for row in per_task[task]], source


def tokenize(tokenizer: Any, rows: list[dict], max_source: int, max_target: int) -> list[dict]:
    from multi_task_kobart.tokenizer import encode_sources, encode_targets

    sources, _ = encode_sources(tokenizer, [r["input"] for r in rows], max_source)
    targets, _ = encode_targets(tokenizer, [r["target"] for r in rows], max_target)
    return [{"task": r["task"], "input_ids": s, "labels": t} for r, s, t in zip(rows, sources, targets)]


# --------------------------------------------------------------------------- FLOPs and peak


def model_config(dims: str, vocab_size: int) -> Any:
    from multi_task_kobart.model import MultiTaskKoBARTConfig

    # base = KoBART-base: 6+6 layers, d_model 768, FFN 3072, 16 heads, vocab 30000.
    return MultiTaskKoBARTConfig.from_preset(dims, max(30000, vocab_size) if dims == "base" else vocab_size)


def batch_flops(cfg: Any, source_lengths: list[int], target_lengths: list[int]) -> float:
    """Useful training FLOPs of one batch (formula in the module docstring)."""
    d, f, vocab = cfg.d_model, cfg.ffn_dim, cfg.vocab_size
    enc_per_token = cfg.encoder_layers * (4 * d * d + 2 * d * f)
    dec_per_token = cfg.decoder_layers * (8 * d * d + 2 * d * f) + vocab * d
    dense = 6 * (enc_per_token * sum(source_lengths) + dec_per_token * sum(target_lengths))
    attention = 12 * d * (cfg.encoder_layers * sum(s * s for s in source_lengths)
                          + cfg.decoder_layers * sum(t * t for t in target_lengths)
                          + cfg.decoder_layers * sum(s * t for s, t in zip(source_lengths, target_lengths)))
    return float(dense + attention)


def measure_matmul_peak(size: int = 2048, repeats: int = 5, inner: int = 8) -> float:
    """Best fp32 FLOP/s of ``size``^3 matmuls over ``repeats`` timed loops of ``inner`` products."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(2):
        torch.matmul(a, b, out=out)  # warm caches and the BLAS thread pool
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            torch.matmul(a, b, out=out)
        best = max(best, 2.0 * size**3 * inner / (time.perf_counter() - start))
    return best


# --------------------------------------------------------------------------- measurements


@dataclass
class Measurement:
    """Totals over the timed steps (after the warmup)."""

    name: str
    steps: int
    seconds: float
    real_tokens: int
    padded_tokens: int
    flops: float
    final_loss: float = float("nan")
    per_step_seconds: list[float] = field(default_factory=list)

    @property
    def tokens_per_s(self) -> float:
        return self.real_tokens / self.seconds

    def summary(self, peak: float) -> dict[str, Any]:
        return {**asdict(self), "tokens_per_s": self.tokens_per_s,
                "step_seconds": self.seconds / self.steps,
                "padding_fraction": 1.0 - self.real_tokens / self.padded_tokens,
                "achieved_gflops": self.flops / self.seconds / 1e9,
                "mfu": self.flops / self.seconds / peak}


def _lengths(batch: dict[str, torch.Tensor]) -> tuple[list[int], list[int], int]:
    sources = batch["attention_mask"].sum(dim=1).tolist()
    targets = (batch["labels"] != LABEL_PAD).sum(dim=1).tolist()
    return sources, targets, batch["input_ids"].numel() + batch["labels"].numel()


def run_ours(cfg: Any, examples: list[dict], batch_size: int, steps: int, warmup: int,
             lr: float, seed: int) -> Measurement:
    """MultiTaskKoBART + train_step/optimizer_step on per-task length-aware batches."""
    from multi_task_kobart.config import ExperimentConfig
    from multi_task_kobart.data.batching import collate, length_grouped_batches
    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.tasks import TASKS
    from multi_task_kobart.training.engine import build_optimizer
    from multi_task_kobart.training.losses import StaticTaskWeights
    from multi_task_kobart.training.schedule import cosine_with_warmup
    from multi_task_kobart.training.step import TaskObjective, optimizer_step, train_step

    torch.manual_seed(seed)
    objective = TaskObjective(MultiTaskKoBART(cfg), StaticTaskWeights(list(TASKS)), 0.1).train()
    exp = ExperimentConfig.from_dict({"training": {"lr": lr, "warmup_steps": 0,
                                                   "max_steps": steps + warmup}})
    optimizer = build_optimizer(objective, exp)
    scheduler = cosine_with_warmup(optimizer, warmup_steps=0, max_steps=steps + warmup, min_lr_ratio=0.1)
    plans = _task_plans(examples, batch_size, seed, length_grouped_batches)
    result = Measurement("ours", steps, 0.0, 0, 0, 0.0)
    for step in range(warmup + steps):
        start = time.perf_counter()
        task = TASKS[step % len(TASKS)]  # round-robin: every task equally often
        rows, plan = plans[task]
        batch = collate([rows[i] for i in plan[(step // len(TASKS)) % len(plan)]])
        out = train_step(objective, batch, task)
        optimizer_step(objective, optimizer, scheduler, max_grad_norm=1.0)
        elapsed = time.perf_counter() - start
        if step >= warmup:
            _account(result, cfg, batch, elapsed)
            result.final_loss = float(out.loss)
    return result


def _task_plans(examples: list[dict], batch_size: int, seed: int, planner: Any) -> dict[str, tuple]:
    plans = {}
    for task in sorted({e["task"] for e in examples}):
        rows = [e for e in examples if e["task"] == task]
        lengths = [(len(r["input_ids"]), len(r["labels"])) for r in rows]
        plans[task] = (rows, planner(lengths, batch_size, seed=seed))
    return plans


def _account(result: Measurement, cfg: Any, batch: dict[str, torch.Tensor],
             elapsed: float | None = None) -> None:
    """Add one timed step's tokens and FLOPs (and its time, when the caller measured it)."""
    sources, targets, padded = _lengths(batch)
    if elapsed is not None:
        result.seconds += elapsed
        result.per_step_seconds.append(round(elapsed, 4))
    result.real_tokens += sum(sources) + sum(targets)
    result.padded_tokens += padded
    result.flops += batch_flops(cfg, sources, targets)


def run_baseline(cfg: Any, examples: list[dict], tokenizer: Any, batch_size: int, steps: int,
                 warmup: int, lr: float, seed: int) -> Measurement:
    """Seq2SeqTrainer defaults on one BartForConditionalGeneration of the same dimensions.

    transformers' Trainer needs ``accelerate``; without it this falls back to the same loop
    written out (RandomSampler, DataCollatorForSeq2Seq, fused AdamW, linear schedule, clip 1.0)
    and the report says so.
    """
    from transformers import BartForConditionalGeneration, DataCollatorForSeq2Seq

    torch.manual_seed(seed)
    model = BartForConditionalGeneration(cfg.to_bart_config())
    inner = DataCollatorForSeq2Seq(tokenizer, model=model, padding="longest", label_pad_token_id=LABEL_PAD)
    batches: list[dict[str, torch.Tensor]] = []

    def counting_collator(features: list[dict]) -> dict[str, torch.Tensor]:
        batch = inner(features)
        batches.append({k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
        return batch

    dataset = [{"input_ids": e["input_ids"], "attention_mask": [1] * len(e["input_ids"]),
                "labels": e["labels"]} for e in examples]
    try:
        import accelerate  # noqa: F401  (Trainer's hard requirement)
    except ImportError:
        name, stamps, loss = "seq2seq_trainer_equivalent", *_trainer_equivalent(
            model, dataset, counting_collator, batch_size, warmup + steps, lr, seed)
    else:
        name, stamps, loss = "seq2seq_trainer", *_real_trainer(
            model, dataset, counting_collator, batch_size, warmup + steps, lr, seed)
    result = Measurement(name, steps, stamps[-1] - stamps[warmup - 1], 0, 0, 0.0, final_loss=loss)
    result.per_step_seconds = [round(b - a, 4) for a, b in zip(stamps[warmup - 1:], stamps[warmup:])]
    for batch in batches[warmup:warmup + steps]:  # batch i feeds step i (the loader may run ahead)
        _account(result, cfg, batch)
    return result


def _real_trainer(model: Any, dataset: list[dict], collator: Any, batch_size: int, max_steps: int,
                  lr: float, seed: int) -> tuple[list[float], float]:
    """The real Seq2SeqTrainer; a callback stamps the end of every optimizer step."""
    from transformers import Seq2SeqTrainer, Seq2SeqTrainingArguments, TrainerCallback

    stamps: list[float] = []

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):  # noqa: ANN001 (HF signature)
            stamps.append(time.perf_counter())

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out_dir:
        args = Seq2SeqTrainingArguments(
            output_dir=out_dir, per_device_train_batch_size=batch_size, max_steps=max_steps,
            learning_rate=lr, report_to=[], use_cpu=True, save_strategy="no", logging_strategy="no",
            eval_strategy="no", disable_tqdm=True, dataloader_num_workers=0, seed=seed)
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=dataset,
                                 data_collator=collator, callbacks=[StepClock()])
        output = trainer.train()
    return stamps, float(output.training_loss)


def _trainer_equivalent(model: Any, dataset: list[dict], collator: Any, batch_size: int,
                        max_steps: int, lr: float, seed: int) -> tuple[list[float], float]:
    """Trainer's default loop written out: what it does per step on one CPU process."""
    from transformers import get_linear_schedule_with_warmup

    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, sampler=torch.utils.data.RandomSampler(dataset, generator=generator),
        collate_fn=collator, num_workers=0)
    # Trainer's default optim on torch >= 2.8 is "adamw_torch_fused" (weight decay 0.0).
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.999), eps=1e-8,
                                  weight_decay=0.0, fused=True)
    scheduler = get_linear_schedule_with_warmup(optimizer, 0, max_steps)
    model.train()
    stamps, loss, batches = [], float("nan"), iter(())
    for _ in range(max_steps):
        batch = next(batches, None)
        if batch is None:
            batches = iter(loader)
            batch = next(batches)
        output = model(**batch)
        output.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        model.zero_grad(set_to_none=True)
        loss = float(output.loss.detach())
        stamps.append(time.perf_counter())
    return stamps, loss


# --------------------------------------------------------------------------- report


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dims", choices=("tiny", "base"), default="base",
                        help="model dimensions: KoBART-base (6+6 layers, d_model 768) or the tiny preset")
    parser.add_argument("--steps", type=int, default=16, help="timed optimizer steps per side")
    parser.add_argument("--warmup", type=int, default=4,
                        help="untimed steps first (>= 1; 4 = each task decoder once, so AdamW state exists)")
    parser.add_argument("--batch-size", type=int, default=8, help="examples per batch (both sides)")
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--max-target-length", type=int, default=64)
    parser.add_argument("--max-rows-per-task", type=int, default=256)
    parser.add_argument("--lr", type=float, default=5e-5, help="Seq2SeqTrainer's default")
    parser.add_argument("--peak-size", type=int, default=2048, help="matmul side for the peak")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: torch's choice, one per core); the peak "
                             "is measured with the same count")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-baseline", action="store_true", help="only our step (MFU runs)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    if args.warmup < 1 or args.steps < 1 or args.batch_size < 1:
        parser.error(f"--warmup ({args.warmup}), --steps ({args.steps}) and --batch-size "
                     f"({args.batch_size}) must all be >= 1")
    return args


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{'side':<27}{'tokens/s':>10}{'s/step':>9}{'padding':>9}{'GFLOP/s':>9}{'MFU':>7}")
    for name in ("baseline", "ours"):
        if name in report:
            r = report[name]
            name = r["name"]
            print(f"{name:<27}{r['tokens_per_s']:>10.1f}{r['step_seconds']:>9.2f}"
                  f"{r['padding_fraction']:>9.1%}{r['achieved_gflops']:>9.1f}{r['mfu']:>7.1%}")
    peak = report["matmul_peak_gflops"]
    print(f"matmul peak: {peak:.0f} GFLOP/s fp32 ({report['peak_size']}^3, "
          f"{report['threads']} threads)")
    if "ratio" in report:
        print(f"ratio ours / Seq2SeqTrainer: {report['ratio']:.2f}x (target >= {TARGET_RATIO}x)")
    print(f"MFU ours at {report['dims']} dims: {report['ours']['mfu']:.1%} (target >= {TARGET_MFU:.0%})")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tokenizer, rows, source = load_tokenizer_and_rows(args.max_rows_per_task, args.seed)
    examples = tokenize(tokenizer, rows, args.max_source_length, args.max_target_length)
    cfg = model_config(args.dims, len(tokenizer))
    print(f"data: {len(examples)} rows from {source}; tokenizer vocab {len(tokenizer)}; dims "
          f"{args.dims} (d_model {cfg.d_model}, {cfg.encoder_layers}+{cfg.decoder_layers} layers); "
          f"batch {args.batch_size}; {args.warmup} warmup + {args.steps} timed steps", flush=True)
    peak = measure_matmul_peak(args.peak_size)
    common = dict(batch_size=args.batch_size, steps=args.steps, warmup=args.warmup, lr=args.lr,
                  seed=args.seed)
    report: dict[str, Any] = {
        "dims": args.dims, "model": {k: getattr(cfg, k) for k in ("vocab_size", "d_model",
                                     "encoder_layers", "decoder_layers", "attention_heads", "ffn_dim")},
        "data_source": source, "rows": len(examples), **{k: v for k, v in vars(args).items() if k != "out"},
        "threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": py_platform.processor() or py_platform.machine(), "peak_size": args.peak_size,
        "flops_formula": "6*(P_enc*S + (P_dec + V*d)*T) + 12*d*(L_enc*sum s^2 + L_dec*sum t^2 "
                         "+ L_dec*sum s*t); P_enc=L_enc*(4d^2+2df), P_dec=L_dec*(8d^2+2df); real tokens only",
    }
    if not args.skip_baseline:
        baseline = run_baseline(cfg, examples, tokenizer, **common)
        print(f"baseline ({baseline.name}) done: {baseline.tokens_per_s:.1f} tokens/s", flush=True)
    ours = run_ours(cfg, examples, **common)
    peak = max(peak, measure_matmul_peak(args.peak_size))  # the higher reading is the fairer peak
    report["matmul_peak_gflops"] = peak / 1e9
    report["ours"] = ours.summary(peak)
    if not args.skip_baseline:
        report["baseline"] = baseline.summary(peak)
        if baseline.name.endswith("_equivalent"):
            report["baseline_note"] = ("accelerate is not installed, and transformers' Trainer needs "
                                       "it: the baseline ran the same default loop written out")
        report["ratio"] = ours.tokens_per_s / baseline.tokens_per_s
        report["meets_ratio_target"] = report["ratio"] >= TARGET_RATIO
    report["meets_mfu_target"] = report["ours"]["mfu"] >= TARGET_MFU
    report["wall_seconds"] = time.perf_counter() - started
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False))
    print_table(report)
    print(f"results: {args.out} ({report['wall_seconds']:.0f}s)")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
