"""Evaluate a MultiTaskKoBART checkpoint (or MLflow model URI) on every task.

Thin entry point (``python jobs/evaluate.py --help``, or ``ray job submit -- python
jobs/evaluate.py ...``); the logic lives in ``multi_task_kobart.evaluation.job``.
"""

import sys

from multi_task_kobart.evaluation.job import main

if __name__ == "__main__":
    sys.exit(main())
