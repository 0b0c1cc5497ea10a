"""Train Multi-Task KoBART with Ray Train (DDP over N workers), tracked in MLflow.

    python jobs/train.py --config configs/tiny.yaml [--set key=value ...]
    ray job submit --working-dir . -- python jobs/train.py --config configs/tiny.yaml --root "$PWD"

Re-running with the same run name resumes from that run's latest checkpoint. Relative paths
in the config (run.storage_path, data.prepared_dir, ...) resolve against --root (default: the
current directory; under `ray job submit --working-dir`, which runs in a temporary copy, give
--root or absolute paths).
"""

from __future__ import annotations

import argparse
import json
import sys

from multi_task_kobart.config import load_config
from multi_task_kobart.training.driver import ROOT_ENV, resolve_paths, run_training


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml", help="YAML experiment config")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a config value, e.g. --set training.max_steps=100 (repeatable)")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help=f"folder that relative config paths resolve against (default: ${ROOT_ENV}, "
                             "else the current directory)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the config with its paths resolved, and exit")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(json.dumps(resolve_paths(cfg, args.root).to_dict(), indent=2, ensure_ascii=False))
        return 0
    result = run_training(cfg, root=args.root)
    print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
