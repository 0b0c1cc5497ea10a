"""Training throughput: our step against transformers' Seq2SeqTrainer, twice, in one process.

Three sides train on the SAME rows, each timing ONE FULL PASS over them (every row exactly
once, in the order and batches its own data policy picks):

* ``ours``: ``MultiTaskKoBART`` + ``TaskObjective`` trained by ``engine.train_step`` +
  ``optimizer_step`` on per-task, length-sorted batches (``length_grouped_batches`` +
  ``collate``), tasks taken in turn.
* ``hf_defaults``: ``Seq2SeqTrainer`` with its defaults (random order over the four tasks mixed,
  ``DataCollatorForSeq2Seq`` padding to the longest row of the batch) on one
  ``BartForConditionalGeneration`` of the same dimensions.
* ``hf_group_by_length``: the same, with ``train_sampling_strategy="group_by_length"``: the one
  setting an informed user adds (transformers' ``LengthGroupedSampler``: shuffle, sort by source
  length inside mega-batches of up to 50 batches).

Every side: same batch size (examples), fp32 on CPU, the same torch thread count, fused AdamW
(``optim="adamw_torch_fused"`` for the Trainer, ``build_optimizer`` for ours; lr 5e-5, weight
decay 0, betas 0.9/0.999), gradient clipping at 1.0. Each pass starts from a copy of the side's
initial weights with a fresh optimizer; the timer covers the pass (data order, collate, forward,
backward, clip, optimizer and schedule steps), not model or Trainer construction. Before the
first round every side runs a short untimed warm-up. Rounds interleave the sides (rotating
who goes first) and each round reshuffles (seed + round); the report gives the median over
rounds with min and max.

The score is real (non-padding) source + target tokens per second and useful GFLOP/s (real
tokens only; formula in ``benchmarks/flops.py``). All sides see the same rows, so both have the
same numerator and the ratios equal the inverse ratio of pass times. MFU divides useful FLOP/s
by an fp32 matmul peak measured here (median of timed ``torch.matmul`` loops taken before the
first round and after each round).

Every pass is also timed in CPU seconds of this process (all threads). On a machine shared
with other jobs, wall-clock numbers measure the scheduler as much as the code; with
``--threads 1`` the CPU-time numbers (tokens per CPU second, MFU against the matmul's FLOPs
per CPU second) are what is left of the code's own speed. With more threads, threads waiting
at a barrier spin and count as CPU time too.

    python benchmarks/train_throughput.py            # KoBART-base dims, 32 rows per task, 3 rounds
    python benchmarks/train_throughput.py --quick    # tiny dims, few rows, 1 round: seconds

Results (machine-specific) go to ``benchmarks/results/train_throughput.json`` (git-ignored) with
the commit, date, CPU, cores and load average of the run.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import math
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch

from flops import FORMULA, training_flops
from inputs import kobart_tokenizer_path, seed_rows
from run_info import RESULTS_DIR, finish_metadata, run_metadata

from multi_task_kobart.tokenizer import LABEL_PAD, PAD_ID

RESULTS = RESULTS_DIR / "train_throughput.json"
SIDES = ("ours", "hf_defaults", "hf_group_by_length")
BASELINES = {"hf_defaults": "random", "hf_group_by_length": "group_by_length"}
LR, WEIGHT_DECAY, BETAS, MAX_GRAD_NORM = 5e-5, 0.0, (0.9, 0.999), 1.0  # Trainer's defaults
ROUTER_LOSS_WEIGHT = 0.1  # TrainingConfig's default: ours trains its task router as it does in a job


# --------------------------------------------------------------------------- data


def load_tokenizer_and_rows(rows_per_task: int, seed: int) -> tuple[Any, list[dict], str]:
    """KoBART's tokenizer + ``rows_per_task`` rows of each task from ../shared/realdata when
    present (else the bundled tokenizer and corpus); the rows every side trains on."""
    from multi_task_kobart.tasks import TASKS
    from multi_task_kobart.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(kobart_tokenizer_path())
    rows, source = seed_rows(seed)
    per_task: dict[str, list[dict]] = {task: [] for task in TASKS}
    for row in rows:
        if len(per_task[row["task"]]) < rows_per_task:
            per_task[row["task"]].append(row)
    return tokenizer, [row for task in TASKS for row in per_task[task]], source


def tokenize(tokenizer: Any, rows: list[dict], max_source: int, max_target: int) -> list[dict]:
    from multi_task_kobart.tokenizer import encode_sources, encode_targets

    sources, _ = encode_sources(tokenizer, [r["input"] for r in rows], max_source)
    targets, _ = encode_targets(tokenizer, [r["target"] for r in rows], max_target)
    return [{"task": r["task"], "input_ids": s, "labels": t} for r, s, t in zip(rows, sources, targets)]


def model_config(dims: str, vocab_size: int) -> Any:
    from multi_task_kobart.model import MultiTaskKoBARTConfig

    # base = KoBART-base: 6+6 layers, d_model 768, FFN 3072, 16 heads, vocab 30000.
    return MultiTaskKoBARTConfig.from_preset(dims, max(30000, vocab_size) if dims == "base" else vocab_size)


def flops_of(cfg: Any, source_lengths: list[int], target_lengths: list[int]) -> int:
    return training_flops(d_model=cfg.d_model, ffn_dim=cfg.ffn_dim, vocab_size=cfg.vocab_size,
                          encoder_layers=cfg.encoder_layers, decoder_layers=cfg.decoder_layers,
                          source_lengths=source_lengths, target_lengths=target_lengths)


# --------------------------------------------------------------------------- matmul peak


def clock() -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, all threads)."""
    return time.perf_counter(), time.process_time()


def matmul_peak_readings(size: int, loops: int, inner: int = 8) -> tuple[list[float], list[float]]:
    """fp32 GFLOP per wall second and per CPU second of ``loops`` timed loops of ``inner``
    ``size``^3 matmuls (after a warm-up)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    for _ in range(2):
        torch.matmul(a, b, out=out)  # warm caches and the BLAS thread pool
    wall, cpu = [], []
    for _ in range(loops):
        start = clock()
        for _ in range(inner):
            torch.matmul(a, b, out=out)
        end = clock()
        wall.append(2.0 * size**3 * inner / (end[0] - start[0]) / 1e9)
        cpu.append(2.0 * size**3 * inner / max(end[1] - start[1], 1e-9) / 1e9)
    return wall, cpu


# --------------------------------------------------------------------------- one timed pass


@dataclass
class Pass:
    """One side's timed pass over the rows."""

    side: str
    round: int
    seconds: float
    cpu_seconds: float
    steps: int
    real_tokens: int
    padded_tokens: int
    flops: int
    mean_loss: float

    def summary(self) -> dict[str, Any]:
        return {"round": self.round, "seconds": self.seconds, "steps": self.steps,
                "tokens_per_s": self.real_tokens / self.seconds,
                "gflops_per_s": self.flops / self.seconds / 1e9,
                "cpu_seconds": self.cpu_seconds,
                "tokens_per_cpu_s": self.real_tokens / self.cpu_seconds,
                "gflops_per_cpu_s": self.flops / self.cpu_seconds / 1e9,
                "padding_fraction": 1.0 - self.real_tokens / self.padded_tokens,
                "padded_tokens": self.padded_tokens, "mean_loss": self.mean_loss}


class BatchLedger:
    """Real tokens, padded tokens, useful FLOPs and the rows of the batches a side trained on."""

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.real = self.padded = self.flops = self.steps = 0
        self.rows: Counter = Counter()

    def add(self, batch: dict[str, torch.Tensor]) -> None:
        sources = batch["attention_mask"].sum(dim=1).tolist()
        targets = (batch["labels"] != LABEL_PAD).sum(dim=1).tolist()
        self.real += sum(sources) + sum(targets)
        self.padded += batch["input_ids"].numel() + batch["labels"].numel()
        self.flops += flops_of(self.cfg, sources, targets)
        self.steps += 1
        for ids, n_source, labels, n_target in zip(batch["input_ids"].tolist(), sources,
                                                   batch["labels"].tolist(), targets):
            self.rows[(tuple(ids[:n_source]), tuple(labels[:n_target]))] += 1


def row_key(example: dict) -> tuple[tuple[int, ...], tuple[int, ...]]:
    return tuple(example["input_ids"]), tuple(example["labels"])


def check_full_pass(side: str, ledger: BatchLedger, examples: list[dict]) -> None:
    """Every side must have trained on every row exactly once, or the comparison is void."""
    expected = Counter(row_key(e) for e in examples)
    if ledger.rows != expected:
        missing, extra = expected - ledger.rows, ledger.rows - expected
        raise RuntimeError(f"{side}: the timed pass did not cover the rows exactly once "
                           f"({sum(missing.values())} missing, {sum(extra.values())} extra)")


def _interleave(per_task: dict[str, list[list[int]]]) -> Iterable[tuple[str, list[int]]]:
    """Tasks in turn, one batch each, until every task's batches are used."""
    for i in range(max(len(b) for b in per_task.values())):
        for task, batches in per_task.items():
            if i < len(batches):
                yield task, batches[i]


def run_ours(template: torch.nn.Module, cfg: Any, examples: list[dict], batch_size: int,
             seed: int, round_: int) -> Pass:
    """One pass of our training step over ``examples`` from a copy of ``template``."""
    from multi_task_kobart.data.batching import collate, length_grouped_batches
    from multi_task_kobart.training.build import build_optimizer
    from multi_task_kobart.training.engine import optimizer_step, train_step
    from multi_task_kobart.training.schedule import cosine_with_warmup

    objective = copy.deepcopy(template).train()
    optimizer = build_optimizer(objective, lr=LR, weight_decay=WEIGHT_DECAY, betas=BETAS)
    by_task: dict[str, list[dict]] = {}
    for example in examples:
        by_task.setdefault(example["task"], []).append(example)
    n_steps = sum(math.ceil(len(rows) / batch_size) for rows in by_task.values())
    scheduler = cosine_with_warmup(optimizer, warmup_steps=0, max_steps=n_steps, min_lr_ratio=0.1)
    ledger, batches, losses = BatchLedger(cfg), [], []
    start = clock()
    plans = {task: length_grouped_batches([(len(r["input_ids"]), len(r["labels"])) for r in rows],
                                          batch_size, seed=seed, epoch=round_)
             for task, rows in by_task.items()}
    for task, indices in _interleave(plans):
        batch = collate([by_task[task][i] for i in indices])
        out = train_step(objective, batch, task)
        optimizer_step(objective, optimizer, scheduler, max_grad_norm=MAX_GRAD_NORM)
        batches.append(batch)
        losses.append(out.loss)
    end = clock()
    for batch in batches:  # counted after the clock stops: bookkeeping is not training work
        ledger.add(batch)
    check_full_pass("ours", ledger, examples)
    return Pass("ours", round_, end[0] - start[0], end[1] - start[1], ledger.steps, ledger.real, ledger.padded, ledger.flops,
                float(torch.stack(losses).mean()))


def run_hf(side: str, template: torch.nn.Module, cfg: Any, tokenizer: Any, examples: list[dict],
           batch_size: int, seed: int, round_: int, facts: dict[str, Any] | None = None) -> Pass:
    """One epoch of ``Seq2SeqTrainer`` (``BASELINES[side]`` sampling) from a copy of ``template``."""
    from transformers import (DataCollatorForSeq2Seq, Seq2SeqTrainer, Seq2SeqTrainingArguments,
                              TrainerCallback)
    from transformers.trainer_callback import PrinterCallback

    model = copy.deepcopy(template)
    inner = DataCollatorForSeq2Seq(tokenizer, model=model, padding="longest", label_pad_token_id=LABEL_PAD)
    batches: list[dict[str, torch.Tensor]] = []

    def keeping_collator(features: list[dict]) -> dict[str, torch.Tensor]:
        batch = inner(features)
        batches.append({k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
        return batch

    stamps: dict[str, tuple[float, float]] = {}

    class PassClock(TrainerCallback):
        def on_epoch_begin(self, args, state, control, **kwargs):  # noqa: ANN001 (HF signature)
            stamps["begin"] = clock()

        def on_epoch_end(self, args, state, control, **kwargs):  # noqa: ANN001
            stamps["end"] = clock()

    dataset = [{"input_ids": e["input_ids"], "attention_mask": [1] * len(e["input_ids"]),
                "labels": e["labels"]} for e in examples]
    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as out_dir:
        args = Seq2SeqTrainingArguments(
            output_dir=out_dir, per_device_train_batch_size=batch_size, num_train_epochs=1,
            learning_rate=LR, weight_decay=WEIGHT_DECAY, adam_beta1=BETAS[0], adam_beta2=BETAS[1],
            max_grad_norm=MAX_GRAD_NORM, optim="adamw_torch_fused",
            train_sampling_strategy=BASELINES[side], report_to=[], use_cpu=True,
            save_strategy="no", logging_strategy="no", eval_strategy="no", disable_tqdm=True,
            dataloader_num_workers=0, seed=seed + round_)
        trainer = Seq2SeqTrainer(model=model, args=args, train_dataset=dataset,
                                 data_collator=keeping_collator, callbacks=[PassClock()])
        trainer.remove_callback(PrinterCallback)  # it prints the end-of-training metrics dict
        output = trainer.train()
    if facts is not None:
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        facts.update(optimizer=type(optimizer).__name__, fused=bool(optimizer.defaults.get("fused")),
                     sampler=type(trainer._get_train_sampler()).__name__)
    ledger = BatchLedger(cfg)
    for batch in batches:
        ledger.add(batch)
    check_full_pass(side, ledger, examples)
    (wall0, cpu0), (wall1, cpu1) = stamps["begin"], stamps["end"]
    return Pass(side, round_, wall1 - wall0, cpu1 - cpu0, ledger.steps, ledger.real,
                ledger.padded, ledger.flops, float(output.training_loss))


# --------------------------------------------------------------------------- report


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def side_report(passes: list[Pass], peak: dict[str, float], cpu_peak: dict[str, float]) -> dict[str, Any]:
    rows = [p.summary() for p in passes]
    report = {key: spread([r[key] for r in rows])
              for key in ("seconds", "tokens_per_s", "gflops_per_s", "cpu_seconds",
                          "tokens_per_cpu_s", "gflops_per_cpu_s", "padding_fraction")}
    # MFU: useful FLOP/s over the median matmul peak; the CPU-time variant divides FLOPs per
    # CPU second by the matmul's FLOPs per CPU second (what is left when other jobs share the
    # cores, as long as the pass runs one thread: idle threads spin and burn CPU time too).
    report["mfu"] = {k: v / peak["median"] for k, v in report["gflops_per_s"].items()}
    report["mfu_cpu_time"] = {k: v / cpu_peak["median"] for k, v in report["gflops_per_cpu_s"].items()}
    report.update(real_tokens=passes[0].real_tokens, useful_flops=passes[0].flops,
                  steps=passes[0].steps, passes=rows)
    return report


def ratios(sides: dict[str, dict[str, Any]], passes: dict[str, list[Pass]]) -> dict[str, Any]:
    """Ours against each baseline: the ratio of the reported medians, and per round."""
    ours = sides["ours"]
    out = {}
    for name in BASELINES:
        if name in sides:
            out[f"ours_vs_{name}"] = {
                "tokens_per_s": ours["tokens_per_s"]["median"] / sides[name]["tokens_per_s"]["median"],
                "gflops_per_s": ours["gflops_per_s"]["median"] / sides[name]["gflops_per_s"]["median"],
                "per_round": [b.seconds / o.seconds for o, b in zip(passes["ours"], passes[name])],
                "tokens_per_cpu_s": (ours["tokens_per_cpu_s"]["median"]
                                     / sides[name]["tokens_per_cpu_s"]["median"]),
                "per_round_cpu": [b.cpu_seconds / o.cpu_seconds
                                  for o, b in zip(passes["ours"], passes[name])]}
    return out


LABELS = {"ours": "ours (train_step, per-task length-sorted)",
          "hf_defaults": "Seq2SeqTrainer defaults",
          "hf_group_by_length": "Seq2SeqTrainer group_by_length"}


def print_table(report: dict[str, Any]) -> None:
    print(f"\n{'side':<42}{'tokens/s (min-max)':>26}{'GFLOP/s':>9}{'MFU':>7}{'padding':>9}"
          f"{'s/pass':>8}{'tokens/CPU-s':>14}{'MFU (CPU)':>10}")
    for name, r in report["sides"].items():
        t = r["tokens_per_s"]
        print(f"{LABELS[name]:<42}{t['median']:>9.1f} ({t['min']:>6.1f}-{t['max']:>6.1f}) "
              f"{r['gflops_per_s']['median']:>8.1f}{r['mfu']['median']:>7.1%}"
              f"{r['padding_fraction']['median']:>9.1%}{r['seconds']['median']:>8.2f}"
              f"{r['tokens_per_cpu_s']['median']:>14.1f}{r['mfu_cpu_time']['median']:>10.1%}")
    peak, cpu_peak = report["matmul_peak_gflops"], report["matmul_peak_gflops_per_cpu_s"]
    print(f"matmul peak: {peak['median']:.0f} GFLOP/s fp32 (min {peak['min']:.0f}, max {peak['max']:.0f}), "
          f"{cpu_peak['median']:.0f} GFLOP per CPU-s; {report['peak_size']}^3, {report['threads']} threads")
    for name, ratio in report["ratios"].items():
        print(f"{name}: {ratio['tokens_per_s']:.2f}x tokens/s "
              f"(per round {', '.join(f'{x:.2f}' for x in ratio['per_round'])}), "
              f"{ratio['tokens_per_cpu_s']:.2f}x tokens per CPU-s")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="smoke size: tiny dims, 4 rows per task, batch 2, 1 round, 1 thread, "
                             "256^3 peak matmul (seconds; checks the outputs, not the speed)")
    parser.add_argument("--dims", choices=("tiny", "small", "base"), default=None,
                        help="model dimensions (default base: KoBART-base 6+6 layers, d_model 768)")
    parser.add_argument("--rows-per-task", type=int, default=None,
                        help="rows of each task in the pass (default 32: 128 rows, 16 steps of 8)")
    parser.add_argument("--rounds", type=int, default=None, help="timed passes per side (default 3)")
    parser.add_argument("--batch-size", type=int, default=None, help="examples per batch (default 8)")
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--max-target-length", type=int, default=64)
    parser.add_argument("--peak-size", type=int, default=None, help="matmul side for the peak (default 2048)")
    parser.add_argument("--peak-loops", type=int, default=5, help="timed matmul loops per peak reading")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads for every side and the peak (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sides", default=",".join(SIDES),
                        help=f"comma-separated subset of {', '.join(SIDES)} (ours is always run)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    quick = {"dims": "tiny", "rows_per_task": 4, "rounds": 1, "batch_size": 2, "peak_size": 256, "threads": 1}
    full = {"dims": "base", "rows_per_task": 32, "rounds": 3, "batch_size": 8, "peak_size": 2048,
            "threads": None}
    for key, value in (quick if args.quick else full).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.quick:
        args.peak_loops = min(args.peak_loops, 3)
    sides = [s.strip() for s in args.sides.split(",") if s.strip()]
    unknown = set(sides) - set(SIDES)
    if unknown:
        parser.error(f"unknown sides {sorted(unknown)}; allowed: {', '.join(SIDES)}")
    args.sides = [s for s in SIDES if s in sides or s == "ours"]
    if min(args.rows_per_task, args.rounds, args.batch_size, args.peak_loops) < 1:
        parser.error("--rows-per-task, --rounds, --batch-size and --peak-loops must all be >= 1")
    return args


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    meta = run_metadata()
    if args.threads:
        torch.set_num_threads(args.threads)
    started = time.perf_counter()
    tokenizer, rows, source = load_tokenizer_and_rows(args.rows_per_task, args.seed)
    if tokenizer.pad_token_id != PAD_ID:
        raise SystemExit(f"the tokenizer's pad id {tokenizer.pad_token_id} is not KoBART's {PAD_ID}")
    examples = tokenize(tokenizer, rows, args.max_source_length, args.max_target_length)
    cfg = model_config(args.dims, len(tokenizer))
    print(f"data: {len(examples)} rows from {source}; tokenizer vocab {len(tokenizer)}; dims "
          f"{args.dims} (d_model {cfg.d_model}, {cfg.encoder_layers}+{cfg.decoder_layers} layers); "
          f"batch {args.batch_size}; sides {', '.join(args.sides)}; {args.rounds} round(s); "
          f"{torch.get_num_threads()} threads", flush=True)

    from transformers import BartForConditionalGeneration

    from multi_task_kobart.model import MultiTaskKoBART
    from multi_task_kobart.tasks import TASKS
    from multi_task_kobart.training.objective import StaticTaskWeights, TaskObjective

    torch.manual_seed(args.seed)
    ours_template = TaskObjective(MultiTaskKoBART(cfg), StaticTaskWeights(list(TASKS)), ROUTER_LOSS_WEIGHT)
    torch.manual_seed(args.seed)
    hf_template = BartForConditionalGeneration(cfg.to_bart_config())
    runners: dict[str, Callable[..., Pass]] = {
        "ours": lambda rows_, round_, **kw: run_ours(ours_template, cfg, rows_, args.batch_size,
                                                     args.seed, round_),
        **{side: (lambda rows_, round_, side=side, **kw: run_hf(
            side, hf_template, cfg, tokenizer, rows_, args.batch_size, args.seed, round_, **kw))
           for side in args.sides if side in BASELINES}}

    # Untimed warm-up: one batch of every task through every side (thread pools, allocator,
    # lazy imports, first-call kernels); also reads which optimizer and sampler HF used.
    warm_rows = [e for task in TASKS for e in [x for x in examples if x["task"] == task][:args.batch_size]]
    hf_facts: dict[str, dict[str, Any]] = {}
    for side in args.sides:
        kwargs = {"facts": hf_facts.setdefault(side, {})} if side in BASELINES else {}
        runners[side](warm_rows, 0, **kwargs)
    peaks, cpu_peaks = matmul_peak_readings(args.peak_size, args.peak_loops)
    passes: dict[str, list[Pass]] = {side: [] for side in args.sides}
    for round_ in range(args.rounds):
        order = args.sides[round_ % len(args.sides):] + args.sides[:round_ % len(args.sides)]
        for side in order:
            result = runners[side](examples, round_)
            passes[side].append(result)
            print(f"round {round_ + 1}/{args.rounds} {side}: {result.seconds:.2f} s "
                  f"({result.cpu_seconds:.2f} CPU-s), "
                  f"{result.real_tokens / result.seconds:.1f} tokens/s, "
                  f"padding {1 - result.real_tokens / result.padded_tokens:.1%}", flush=True)
            gc.collect()
        wall, cpu = matmul_peak_readings(args.peak_size, args.peak_loops)
        peaks, cpu_peaks = peaks + wall, cpu_peaks + cpu

    peak, cpu_peak = spread(peaks), spread(cpu_peaks)
    sides = {side: side_report(passes[side], peak, cpu_peak) for side in args.sides}
    report: dict[str, Any] = {
        "meta": meta, "dims": args.dims,
        "model": {k: getattr(cfg, k) for k in ("vocab_size", "d_model", "encoder_layers",
                                               "decoder_layers", "attention_heads", "ffn_dim")},
        "data_source": source, "rows": len(examples), "rows_per_task": args.rows_per_task,
        "batch_size": args.batch_size, "rounds": args.rounds,
        "max_source_length": args.max_source_length, "max_target_length": args.max_target_length,
        "seed": args.seed, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "transformers": __import__("transformers").__version__, "dtype": "float32",
        "optimizer": {"lr": LR, "weight_decay": WEIGHT_DECAY, "betas": list(BETAS),
                      "max_grad_norm": MAX_GRAD_NORM, "ours": "build_optimizer (fused AdamW)",
                      "hf": hf_facts},
        "timing": "one full pass over the same rows per side and round, fresh copy of the initial "
                  "weights and a fresh optimizer each pass; sides interleaved, first side rotates; "
                  "median, min and max over rounds; wall clock and CPU time (process, all threads) "
                  "over the same span",
        "flops_formula": FORMULA, "peak_size": args.peak_size,
        "matmul_peak_gflops": {**peak, "readings": peaks},
        "matmul_peak_gflops_per_cpu_s": {**cpu_peak, "readings": cpu_peaks},
        "sides": sides, "ratios": ratios(sides, passes),
        "wall_seconds": time.perf_counter() - started,
    }
    report["meta"] = finish_metadata(meta)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    print_table(report)
    print(f"results: {args.out} ({report['wall_seconds']:.0f} s)")
    return report


if __name__ == "__main__":
    main(sys.argv[1:])
