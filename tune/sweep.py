"""Ray Tune sweep over the training job: every trial is a full Ray Train run, ASHA stops the
laggards, MLflow nests every trial's run under one sweep run.

    python tune/sweep.py --config configs/tiny.yaml --space tune/space.yaml
    python tune/sweep.py ... --search optuna --objective worst --train-best
    ray job submit --working-dir . -- python tune/sweep.py --config configs/kobart-base.yaml --root "$PWD"

Ctrl-C stops the sweep with its state saved; the same command again resumes it (finished
trials are kept). The best configuration is written to <storage>/<name>/best_config.yaml:
`python jobs/train.py --config <that file>` trains and registers it (--train-best does it now).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields

from multi_task_kobart.cli import user_errors
from multi_task_kobart.config import load_config_dict
from multi_task_kobart.data.validation import DataError
from multi_task_kobart.training.driver import ROOT_ENV
from multi_task_kobart.tuning.space import load_space
from multi_task_kobart.tuning.sweep import SweepSettings, run_sweep

#: Exit status of an interrupted sweep (the shell's for Ctrl-C).
INTERRUPTED = 130


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = SweepSettings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/tiny.yaml", help="base experiment config (YAML)")
    parser.add_argument("--space", default="tune/space.yaml", help="search space (YAML)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[], metavar="KEY=VALUE",
                        help="override a base config value, e.g. --set training.max_steps=300")
    parser.add_argument("--root", default=None, metavar="DIR",
                        help=f"folder relative config paths resolve against (default: ${ROOT_ENV}, else the cwd)")
    parser.add_argument("--name", default=defaults.name, help="sweep name; the same name resumes it")
    parser.add_argument("--num-samples", type=int, default=defaults.num_samples,
                        help="configurations drawn from the space (times every grid value)")
    parser.add_argument("--objective", choices=["mean", "worst"], default=defaults.objective,
                        help="aggregate of the unweighted per-task validation losses")
    parser.add_argument("--search", choices=["random", "optuna"], default=defaults.search)
    parser.add_argument("--scheduler", choices=["asha", "fifo"], default=defaults.scheduler)
    parser.add_argument("--grace-period", type=int, default=defaults.grace_period,
                        help="validations before ASHA may stop a trial")
    parser.add_argument("--reduction-factor", type=int, default=defaults.reduction_factor)
    parser.add_argument("--max-concurrent-trials", type=int, default=None,
                        help="default: as many as the cluster fits (trial CPU + its Train workers)")
    parser.add_argument("--trial-cpus", type=float, default=defaults.trial_cpus,
                        help="CPUs of each trial's own process, on top of its workers")
    parser.add_argument("--max-failures", type=int, default=defaults.max_failures,
                        help="retries of a crashed trial (from its latest checkpoint)")
    parser.add_argument("--seed", type=int, default=defaults.seed, help="search algorithm seed")
    parser.add_argument("--storage-path", default=None, help="default: the config's run.storage_path")
    parser.add_argument("--train-best", action="store_true",
                        help="then train (and register) the best configuration, as jobs/train.py does")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The config, the space file and the sweep settings are checked (and the sweep's resume
    # state compared) before any trial starts: a mistake there is one line, exit status 2.
    with user_errors(ValueError, FileNotFoundError):
        base = load_config_dict(args.config, args.overrides)
        space = load_space(args.space, base)
        settings = SweepSettings(**{f.name: getattr(args, f.name) for f in fields(SweepSettings)})
    with user_errors(DataError):
        result = run_sweep(base, space, settings, root=args.root, train_best=args.train_best)
    if result.interrupted:
        return INTERRUPTED
    if result.best_training is not None:
        print(f"[sweep] trained the best config: {result.best_training.registered_model or result.best_training.run_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
