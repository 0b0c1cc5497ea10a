"""Evaluate a MultiTaskKoBART checkpoint (or MLflow model URI) on every task.

Thin entry point (``python jobs/evaluate.py --help``, or ``ray job submit -- python
jobs/evaluate.py ...``); the logic lives in ``multi_task_kobart.evaluation.job``. A bad
decoding setting, a missing model or data path, or data that cannot be read ends the job
with one line on stderr and exit status 2.
"""

import sys

from multi_task_kobart.cli import user_errors
from multi_task_kobart.data.encodings import check_encoding
from multi_task_kobart.data.validation import DataError
from multi_task_kobart.evaluation.job import build_parser, generation_kwargs, main

if __name__ == "__main__":
    parser = build_parser()
    # The decoding settings and the encoding are checked before any model loads
    # (GenerationSettings raises ValueError, check_encoding a DataError, which is one).
    with user_errors(ValueError, prog=parser.prog):
        args = parser.parse_args()
        generation_kwargs(args)
        check_encoding(args.encoding, "--encoding")
    with user_errors(DataError, FileNotFoundError, prog=parser.prog):
        sys.exit(main())
