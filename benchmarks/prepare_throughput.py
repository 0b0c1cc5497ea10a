"""Data-preparation throughput: ``prepare_dataset`` vs a naive per-row loop, same run, same rows.

    python benchmarks/prepare_throughput.py [--rows 40000] [--repeats 3] [--tokenizer PATH]
    python benchmarks/prepare_throughput.py --quick     # 400 rows, 1 repeat: a smoke run

Both sides start from the same JSONL file and end with tokenized rows on disk:

* ours  - ``prepare_dataset``: read + validate, seeded split, batched tokenization through
  ``datasets.map(batched=True)``, Parquet shards per task/split + manifest (cold: fresh cache).
* naive - the loop people write first: for each line, ``json.loads``, validate, tokenize the
  input and the target with one tokenizer call each, append one JSON line to the output.

Rows come from the real Korean examples in ../shared/realdata when present (else, or with
``--source bundled``, the bundled corpus), repeated with a counter appended until ``--rows``
is reached, so lengths are realistic. The tokenizer is KoBART's from ../shared when present, else the bundled one.
The two sides alternate; each side's median wall time over the repeats counts (min and max are
kept). Writes benchmarks/results/prepare_throughput.json (git-ignored: the numbers hold for one
machine) with the commit, date, CPU, cores and load average of the run, and prints the ratio.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import datasets  # noqa: F401  (imported up front: a one-time cost, not preparation work)

from inputs import SHARED, kobart_tokenizer_path
from run_info import RESULTS_DIR, finish_metadata, run_metadata

from multi_task_kobart.data.prepare import prepare_dataset
from multi_task_kobart.data.shards import auto_num_proc
from multi_task_kobart.data.validation import validate_record
from multi_task_kobart.tokenizer import encode_sources, encode_targets, load_tokenizer

RESULTS = RESULTS_DIR / "prepare_throughput.json"


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


def spread(values: list[float]) -> dict[str, float]:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def measure(source: Path, work: Path, tokenizer, repeats: int, lengths: dict,
            num_proc: int | None = None) -> dict:
    """Alternate the two sides (on a shared machine both then see the same background load)
    and report each side's median run, with the fastest and slowest."""
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
    sides = {}
    for side, runs in (("ours", ours), ("naive", naive)):
        wall = spread([w for w, _ in runs])
        sides[side] = {"seconds": wall, "rows_per_s": rows / wall["median"],
                       "cpu_seconds": statistics.median(c for _, c in runs),
                       "all_wall_seconds": [w for w, _ in runs]}
    return {"rows": rows, "tokenizer": prepared.manifest["tokenizer"]["name"], **sides,
            "ratio": sides["ours"]["rows_per_s"] / sides["naive"]["rows_per_s"],
            "cpu_ratio": sides["naive"]["cpu_seconds"] / sides["ours"]["cpu_seconds"],
            "cache_hit_seconds": cached}


def save_result(out: Path, workload: str, result: dict) -> None:
    """Store ``result`` under its workload, keeping the other workload's last result."""
    saved = json.loads(out.read_text()) if out.is_file() else {}
    saved = saved if set(saved) <= {"realdata", "bundled"} else {}
    saved[workload] = result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(saved, indent=2) + "\n")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="prepare_dataset vs a naive per-row loop")
    parser.add_argument("--quick", action="store_true",
                        help="smoke size: 400 rows, 1 repeat (checks the outputs, not the speed)")
    parser.add_argument("--rows", type=int, default=None, help="rows in the input file (default 40,000)")
    parser.add_argument("--tokenizer", help="default: ../shared KoBART tokenizer, else bundled")
    parser.add_argument("--max-source-length", type=int, default=128)
    parser.add_argument("--max-target-length", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=None,
                        help="alternating runs per side (default 3); the median counts")
    parser.add_argument("--num-proc", type=int, help="tokenizer processes (default: prepare_dataset's choice)")
    parser.add_argument("--source", choices=("realdata", "bundled"), default="realdata",
                        help="rows to repeat: ../shared/realdata (falls back to bundled) or the bundled corpus")
    parser.add_argument("--out", type=Path, default=RESULTS, help="result file (JSON)")
    args = parser.parse_args(argv)
    args.rows = args.rows or (400 if args.quick else 40_000)
    args.repeats = args.repeats or (1 if args.quick else 3)
    meta = run_metadata()
    tokenizer = load_tokenizer(args.tokenizer or kobart_tokenizer_path())
    lengths = dict(max_source_length=args.max_source_length, max_target_length=args.max_target_length)
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "train.jsonl"
        origin = write_input(source, args.rows, args.source)
        measured = measure(source, Path(tmp), tokenizer, args.repeats, lengths, args.num_proc)
    # Other jobs on the machine slow both sides and the parallel one most: the load average
    # at the start and the end is kept next to the numbers (in "meta").
    result = {"meta": finish_metadata(meta), "source": origin, **lengths, **measured,
              "num_proc": args.num_proc or auto_num_proc(args.rows), "repeats": args.repeats,
              "timing": "median of alternating repeats (min, max kept), wall clock"}
    save_result(args.out, "bundled" if origin == "bundled corpus" else "realdata", result)
    print(f"prepare throughput on {result['rows']} rows ({origin}, tokenizer {result['tokenizer']}, "
          f"{meta['cpu_model']}, {meta['cpu_cores']} cores, num_proc {result['num_proc']}):")
    for side, label in (("ours", "ours  (batched datasets.map + Parquet shards)"),
                        ("naive", "naive (per-row tokenize + write)             ")):
        wall = result[side]["seconds"]
        print(f"  {label}: {result[side]['rows_per_s']:>10,.0f} rows/s "
              f"(median {wall['median']:.2f} s, min {wall['min']:.2f}, max {wall['max']:.2f})")
    print(f"  ratio: {result['ratio']:.2f}x wall clock, {result['cpu_ratio']:.2f}x CPU time "
          f"(re-run with the cache: {result['cache_hit_seconds']:.2f} s)")
    print(f"  -> {args.out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
