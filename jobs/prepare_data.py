"""Prepare task datasets: seed files -> validated, tokenized Parquet shards + manifest.json.

    python jobs/prepare_data.py                               # the bundled corpus
    python jobs/prepare_data.py --input data/my_tasks/ --tokenizer path/to/tokenizer.json
    python jobs/prepare_data.py --input a.jsonl b.csv --on-error skip --out data/prepared/mine
    python jobs/prepare_data.py --input legacy_ko.csv --encoding cp949

Defaults (tokenizer, max lengths, valid fraction, encoding, output folder) come from the
experiment config (``--config``, ``--set data.key=value``) so the prepared data matches what
``jobs/train.py`` expects. Exit status: 0 on success, 2 when rows are invalid or the input,
config or a setting is wrong (one line on stderr that says which).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from multi_task_kobart.cli import USAGE_ERROR, encoding_override, user_errors
from multi_task_kobart.config import load_config
from multi_task_kobart.data.prepare import prepare_dataset, write_bundled_corpus
from multi_task_kobart.data.encodings import DEFAULT_ENCODING
from multi_task_kobart.data.validation import DataError, DataValidationError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", nargs="+", help="files/folders of {task,input,target} records "
                        "(JSONL, JSON list, CSV/TSV, Parquet) or a hub dataset name; default: "
                        "data.source from the config ('bundled' = the bundled corpus)")
    parser.add_argument("--out", help="output root (default: data.prepared_dir)")
    parser.add_argument("--config", help="experiment YAML whose data section gives the defaults")
    parser.add_argument("--set", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="config override, e.g. --set data.max_source_length=256")
    parser.add_argument("--tokenizer", help="'bundled', a tokenizer dir / tokenizer.json, or a hub id")
    parser.add_argument("--encoding", help="text encoding of the input files, e.g. cp949 (EUC-KR) "
                        "(default: data.encoding, utf-8); short for --set data.encoding=...")
    parser.add_argument("--max-source-length", type=int)
    parser.add_argument("--max-target-length", type=int)
    parser.add_argument("--valid-fraction", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--on-error", choices=("fail", "skip"), default="fail",
                        help="fail: list every bad row and stop; skip: write them to rejects.jsonl")
    parser.add_argument("--dedup", action="store_true", help="drop exact repeats within a split")
    parser.add_argument("--num-proc", type=int, help="tokenizer processes (default: by size and cores)")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON too")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with user_errors(ValueError, FileNotFoundError):
        cfg = load_config(args.config, [*args.set, *encoding_override(args.encoding)])
    data, seed = cfg.data, cfg.seed if args.seed is None else args.seed
    out = Path(args.out or data.prepared_dir)
    inputs, encoding = args.input or [data.source], data.encoding
    # A missing tokenizer file is the user's too; the data checks raise DataError.
    with user_errors(DataError, FileNotFoundError):
        if inputs == ["bundled"]:  # written here, in UTF-8
            inputs, encoding = [write_bundled_corpus(out / "sources", seed=seed)], DEFAULT_ENCODING
        try:
            prepared = prepare_dataset(
                inputs if len(inputs) > 1 else inputs[0], out,
                tokenizer=args.tokenizer or data.tokenizer,
                max_source_length=args.max_source_length or data.max_source_length,
                max_target_length=args.max_target_length or data.max_target_length,
                valid_fraction=data.valid_fraction if args.valid_fraction is None else args.valid_fraction,
                seed=seed, on_error=args.on_error, dedup=args.dedup, encoding=encoding,
                num_proc=args.num_proc, progress=True)
        except DataValidationError as exc:
            print(f"error: invalid input rows (rerun with --on-error skip to set them aside):\n{exc}",
                  file=sys.stderr)
            return USAGE_ERROR
    print(prepared.summary())
    if args.json:
        print(json.dumps(prepared.manifest, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
