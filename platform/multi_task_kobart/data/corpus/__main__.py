"""Command line: ``python -m multi_task_kobart.data.corpus OUT_DIR [--seed N]`` writes the JSONL."""

from __future__ import annotations

import argparse
from pathlib import Path

from multi_task_kobart.data.corpus.generate import write_corpus


def main(argv: list[str] | None = None) -> None:
    """Write ``train.jsonl`` and ``test.jsonl`` into the given folder and print their paths."""
    parser = argparse.ArgumentParser(prog="python -m multi_task_kobart.data.corpus",
                                     description="Write the bundled Korean multi-task corpus as JSONL.")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    for split, path in write_corpus(args.out_dir, args.seed).items():
        print(f"{split}: {path}")


if __name__ == "__main__":
    main()
