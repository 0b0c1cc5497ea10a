"""Data-preparation throughput: ``prepare_dataset`` vs a naive per-row loop, same run, same rows.

    python benchmarks/prepare_throughput.py [--rows 50000] [--tokenizer PATH]

Both sides start from the same JSONL file and end with tokenized rows on disk:

* ours  - ``prepare_dataset``: read + validate, seeded split, batched tokenization through
  ``datasets.map(batched=True)``, Parquet shards per task/split + manifest (cold: fresh cache).
* naive - the loop people write first: for each line, ``json.loads``, validate, tokenize the
  input and the target with one tokenizer call each, append one JSON line to the output.

Rows come from the real Korean examples in ../shared/realdata when present (else the
bundled corpus), repeated with a counter appended until ``--rows`` is reached, so lengths
are realistic. The tokenizer is KoBART's from ../shared when present, else the bundled one.
Writes benchmarks/results/prepare_throughput.json and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
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


def seed_rows() -> tuple[list[dict], str]:
    """Base rows and where they came from."""
    realdata = sorted((SHARED / "realdata").glob("*.jsonl"))
    if realdata:
        rows = [json.loads(line) for path in realdata for line in path.open(encoding="utf-8") if line.strip()]
        return rows, "../shared/realdata"
    from multi_task_kobart.data.corpus import generate_corpus

    return generate_corpus(seed=0)["train"], "bundled corpus"


def write_input(path: Path, n_rows: int) -> str:
    base, origin = seed_rows()
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


def best_of(repeats: int, function, *args, **kwargs):
    """Result and the fastest wall time over ``repeats`` runs (the machine may be shared;
    the minimum is the least disturbed measurement)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args, **kwargs)
        times.append(time.perf_counter() - start)
    return result, min(times)


def ours_cold(source: Path, out_root: Path, **kwargs):
    """``prepare_dataset`` into a fresh folder, so no run finds a previous run's shards."""
    out_root.mkdir(exist_ok=True)
    return prepare_dataset(source, out_root / f"run-{len(list(out_root.iterdir()))}", **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description="prepare_dataset vs a naive per-row loop")
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--tokenizer", help="default: ../shared KoBART tokenizer, else bundled")
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--max-target-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3, help="runs per side; the fastest counts")
    args = parser.parse_args()
    kobart = SHARED / "kobart-tokenizer" / "tokenizer.json"
    tokenizer_arg = args.tokenizer or (str(kobart) if kobart.is_file() else None)
    tokenizer = load_tokenizer(tokenizer_arg)
    lengths = dict(max_source_length=args.max_source_length, max_target_length=args.max_target_length)
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = tmp_path / "train.jsonl"
        origin = write_input(source, args.rows)
        prepared, ours_s = best_of(args.repeats, ours_cold, source, tmp_path / "ours",
                                   tokenizer=tokenizer, **lengths)
        again, cached_s = best_of(1, prepare_dataset, source, prepared.path.parent,
                                  tokenizer=tokenizer, **lengths)
        assert again.reused
        naive_rows, naive_s = best_of(args.repeats, naive_prepare, source, tmp_path / "naive.jsonl",
                                      tokenizer, args.max_source_length, args.max_target_length)
    rows = sum(n for split in prepared.counts.values() for n in split.values())
    assert rows == naive_rows == args.rows, (rows, naive_rows, args.rows)
    result = {
        "rows": args.rows, "source": origin, "tokenizer": prepared.manifest["tokenizer"]["name"],
        "max_source_length": args.max_source_length, "max_target_length": args.max_target_length,
        "cpu_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "python": sys.version.split()[0], "num_proc": auto_num_proc(args.rows),
        "ours": {"seconds": round(ours_s, 3), "rows_per_s": round(rows / ours_s, 1)},
        "naive": {"seconds": round(naive_s, 3), "rows_per_s": round(rows / naive_s, 1)},
        "ratio": round(naive_s / ours_s, 2),
        "cache_hit_seconds": round(cached_s, 3),
        "repeats": args.repeats, "timing": "fastest of the repeats, wall clock",
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(f"prepare throughput on {rows} rows ({origin}, tokenizer {result['tokenizer']}, "
          f"{result['cpu_cores']} cores):")
    print(f"  ours  (batched datasets.map + Parquet shards): {result['ours']['rows_per_s']:>10,.0f} rows/s")
    print(f"  naive (per-row tokenize + write):              {result['naive']['rows_per_s']:>10,.0f} rows/s")
    print(f"  ratio: {result['ratio']:.2f}x   (re-run with the cache: {cached_s:.2f} s)")
    print(f"  -> {RESULTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
