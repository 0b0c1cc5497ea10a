"""How the command-line jobs answer a user's mistake: one line on stderr, exit status 2.

A missing file, an empty folder or a bad config value is not a bug, and a traceback buries
the one line the user needs under fifty they do not. Each job wraps only the steps that
check what the user gave it (arguments, config, data) in :func:`user_errors`, naming the
exception types that mean "the input is wrong" at that step: ``ValueError`` while a config
is parsed (all its checks raise it), ``DataError`` while data is read (a ``ValueError`` from
deep inside tokenization would be a bug). Anything else still ends in a traceback.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: Exit status of a usage or user error (argparse's, too).
USAGE_ERROR = 2


@contextmanager
def user_errors(*kinds: type[BaseException], prog: str | None = None) -> Iterator[None]:
    """Turn an exception of one of ``kinds`` into ``<prog>: error: <message>`` on stderr and
    exit status 2, as argparse answers a bad argument; ``prog`` defaults to the script's name."""
    try:
        yield
    except kinds as error:
        name = prog or os.path.basename(sys.argv[0])
        print(f"{name}: error: {error}", file=sys.stderr)
        raise SystemExit(USAGE_ERROR) from None


def encoding_override(encoding: str | None) -> list[str]:
    """``--encoding X`` as the ``--set`` override it is short for (``data.encoding``); quoted
    as JSON, which YAML reads back as the same string."""
    return [] if encoding is None else [f"data.encoding={json.dumps(encoding)}"]
