"""Train Multi-Task KoBART with Ray Train (DDP over N workers), tracked in MLflow.

    python jobs/train.py --config configs/tiny.yaml [--set key=value ...]
    ray job submit --working-dir . -- python jobs/train.py --config configs/tiny.yaml --root "$PWD"

Re-running with the same run name resumes from that run's latest checkpoint. Relative paths
in the config (run.storage_path, data.prepared_dir, ...) resolve against --root (default: the
current directory; under `ray job submit --working-dir`, which runs in a temporary copy, give
--root or absolute paths). A mistake in the arguments, the config or the data ends the job
with one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

from multi_task_kobart.cli import encoding_override, user_errors
from multi_task_kobart.config import load_config
from multi_task_kobart.data.validation import DataError


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml", help="YAML experiment config")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=100 (repeatable)")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help="folder that relative config paths resolve against (default: $MTK_ROOT_DIR, "
                             "else the current directory)")
    parser.add_argument("--encoding", help="text encoding of data.source's files, e.g. cp949 "
                        "(default: utf-8); short for --set data.encoding=...")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config with its paths resolved, and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with user_errors(ValueError, FileNotFoundError):
        cfg = load_config(args.config, [*args.overrides, *encoding_override(args.encoding)])
    # Imported only now: torch and Ray take seconds to import, and a mistake in the config
    # above is answered before that.
    from multi_task_kobart.training.driver import resolve_paths, run_training
    from multi_task_kobart.training.engine import ResumeError

    with user_errors(ValueError):  # a relative path that would land in Ray's temporary copy
        resolved = resolve_paths(cfg, args.root)
    if args.print_config:
        print(json.dumps(resolved.to_dict(), indent=2, ensure_ascii=False))
        return 0
    # data.source is read and checked, and a resume checked against the run's checkpoints,
    # before any worker starts.
    with user_errors(DataError, ResumeError):
        result = run_training(cfg, root=args.root)
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
