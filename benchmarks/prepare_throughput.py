"""Data-preparation throughput: ``prepare_dataset`` vs a naive per-row loop, same run, same rows.

    python benchmarks/prepare_throughput.py [--rows 40000] [--repeats 3] [--tokenizer PATH]

Both sides start from the same JSONL file and end with tokenized rows on disk:

* ours  - ``prepare_dataset``: read + validate, seeded split, batched tokenization through
  ``datasets.map(batched=True)``, Parquet shards per task/split + manifest (cold: fresh cache).
* naive - the loop people write first: for each line, ``json.loads``, validate, tokenize the
  input and the target with one tokenizer call each, append one JSON line to the output.

Rows come from the real Korean examples in ../shared/realdata when present (else, or with
``--source bundled``, the bundled corpus), repeated with a counter appended until ``--rows``
is reached, so lengths are realistic. The tokenizer is KoBART's from ../shared when present, else the bundled one.
Writes benchmarks/results/prepare_throughput.json and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import datasets  # noqa: F401  (imported up front: a one-time cost, not preparation work)

from multi_task_kobart.data.prepare import prepare_dataset
from multi_task_kobart.data.shards import auto_num_proc
from multi_task_kobart.data.validation import validate_record
from multi_task_kobart.tokenizer import encode_sources, encode_targets, load_tokenizer

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTK_SHARED_DIR", ROOT.parent / "shared"))
RESULTS = ROOT / "benchmarks" / "results" / "prepare_throughput.json"


def seed_rows(source: str) -> tuple[list[dict], str]:
    """Base rows and where they came from: the real examples (long QA contexts and
    dialogues: tokenizer-bound) or the bundled corpus (short sentences: overhead-bound)."""
    realdata = sorted((SHARED / "realdata").glob("*.jsonl"))
    if source == "realdata" and realdata:
        rows = [json.loads(line) for path in realdata for line in path.open(encoding="utf-8") if line.strip()]
        return rows, "../shared/realdata"
    from multi_task_kobart.data.corpus import generate_corpus

    return generate_corpus(seed=0)["train"], "bundled corpus"


def write_input(path: Path, n_rows: int, source: str = "realdata") -> str:
    base, origin = seed_rows(source)
    with open(path, "w", encoding="utf-8") as handle:
        for index in range(n_rows):
            row = dict(base[index % len(base)])
            row["input"] = f"{row['input']} ({index // len(base)})"  # distinct rows, same lengths
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return origin


def naive_prepare(source: Path, out: Path, tokenizer, max_source: int, max_target: int) -> int:
    """The per-row baseline: parse, validate, tokenize and write one row at a time."""
    count = 0
    with open(source, encoding="utf-8") as lines, open(out, "w", encoding="utf-8") as sink:
        for number, line in enumerate(lines, start=1):
            record = json.loads(line)
            if validate_record(record, source.name, number):
                continue
            input_ids, _ = encode_sources(tokenizer, [record["input"]], max_source)
            labels, _ = encode_targets(tokenizer, [record["target"]], max_target)
            sink.write(json.dumps({**record, "input_ids": input_ids[0], "labels": labels[0]},
                                  ensure_ascii=False) + "\n")
            count += 1
    return count


def cpu_seconds() -> float:
    """CPU time of this process (all threads) plus finished child processes."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def timed(function, *args, **kwargs):
    """Result, wall seconds and CPU seconds of one call."""
    wall, cpu = time.perf_counter(), cpu_seconds()
    result = function(*args, **kwargs)
    return result, time.perf_counter() - wall, cpu_seconds() - cpu


def ours_cold(source: Path, out_root: Path, **kwargs):
    """``prepare_dataset`` into a fresh folder, so no run finds a previous run's shards."""
    out_root.mkdir(exist_ok=True)
    return prepare_dataset(source, out_root / f"run-{len(list(out_root.iterdir()))}", **kwargs)


def measure(source: Path, work: Path, tokenizer, repeats: int, lengths: dict,
            num_proc: int | None = None) -> dict:
    """Alternate the two sides and keep each side's fastest run: on a shared machine both
    then see the same background load, and the minimum is the least disturbed run."""
    ours, naive = [], []  # (wall, cpu) per run
    for _ in range(repeats):
        prepared, *seconds = timed(ours_cold, source, work / "ours", tokenizer=tokenizer,
                                   num_proc=num_proc, **lengths)
        ours.append(seconds)
        naive_rows, *seconds = timed(naive_prepare, source, work / "naive.jsonl", tokenizer,
                                     lengths["max_source_length"], lengths["max_target_length"])
        naive.append(seconds)
    again, cached, _ = timed(prepare_dataset, source, prepared.path.parent, tokenizer=tokenizer, **lengths)
    assert again.reused, "the re-run should reuse the content-addressed shards"
    rows = sum(n for split in prepared.counts.values() for n in split.values())
    assert rows == naive_rows, (rows, naive_rows)
    best = {"ours": min(ours), "naive": min(naive)}  # fastest wall time, with its CPU time
    return {"rows": rows, "tokenizer": prepared.manifest["tokenizer"]["name"],
            **{side: {"seconds": round(wall, 3), "rows_per_s": round(rows / wall, 1),
                      "cpu_seconds": round(cpu, 3)} for side, (wall, cpu) in best.items()},
            "ratio": round(best["naive"][0] / best["ours"][0], 2),
            "cpu_ratio": round(best["naive"][1] / best["ours"][1], 2),
            "cache_hit_seconds": round(cached, 3),
            "all_wall_seconds": {"ours": [round(w, 3) for w, _ in ours],
                                 "naive": [round(w, 3) for w, _ in naive]}}


def save_result(workload: str, result: dict) -> None:
    """Store ``result`` under its workload, keeping the other workload's last result."""
    saved = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    saved = saved if set(saved) <= {"realdata", "bundled"} else {}
    saved[workload] = result
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(saved, indent=2) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description="prepare_dataset vs a naive per-row loop")
    parser.add_argument("--rows", type=int, default=40_000)
    parser.add_argument("--tokenizer", help="default: ../shared KoBART tokenizer, else bundled")
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--max-target-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; the fastest counts")
    parser.add_argument("--num-proc", type=int, help="tokenizer processes (default: prepare_dataset's choice)")
    parser.add_argument("--source", choices=("realdata", "bundled"), default="realdata",
                        help="rows to repeat: ../shared/realdata (falls back to bundled) or the bundled corpus")
    args = parser.parse_args()
    kobart = SHARED / "kobart-tokenizer" / "tokenizer.json"
    tokenizer = load_tokenizer(args.tokenizer or (str(kobart) if kobart.is_file() else None))
    lengths = dict(max_source_length=args.max_source_length, max_target_length=args.max_target_length)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "train.jsonl"
        origin = write_input(source, args.rows, args.source)
        measured = measure(source, Path(tmp), tokenizer, args.repeats, lengths, args.num_proc)
    result = {"source": origin, **lengths, **measured,
              "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
              "num_proc": args.num_proc or auto_num_proc(args.rows), "python": sys.version.split()[0],
              "repeats": args.repeats, "timing": "fastest of alternating repeats, wall clock",
              # Other jobs on the machine slow both sides and the parallel one most: keep the
              # load next to the numbers.
              "load_average_1m_after": round(os.getloadavg()[0], 2)}
    save_result("bundled" if origin == "bundled corpus" else "realdata", result)
    print(f"prepare throughput on {result['rows']} rows ({origin}, tokenizer {result['tokenizer']}, "
          f"{result['cpu_cores']} cores, num_proc {result['num_proc']}):")
    print(f"  ours  (batched datasets.map + Parquet shards): {result['ours']['rows_per_s']:>10,.0f} rows/s")
    print(f"  naive (per-row tokenize + write):              {result['naive']['rows_per_s']:>10,.0f} rows/s")
    print(f"  ratio: {result['ratio']:.2f}x wall clock, {result['cpu_ratio']:.2f}x CPU time "
          f"(re-run with the cache: {result['cache_hit_seconds']:.2f} s)")
    print(f"  -> {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
