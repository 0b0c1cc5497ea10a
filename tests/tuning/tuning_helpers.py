"""Helpers for the sweep tests: a crash injected once into whichever trial gets there first."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import ray.cloudpickle
import ray.train


class InjectedCrash(RuntimeError):
    """The crash :class:`CrashOnce` raises inside a training worker."""


@dataclass(frozen=True)
class CrashOnce:
    """A step callback that crashes the first training run reaching ``step``, once in all:
    ``marker`` records the run that crashed (trial runs are named ``<sweep>-<trial id>``)."""

    step: int
    marker: str

    def __call__(self, step: int, resumed: bool) -> None:
        marker = Path(self.marker)
        if step != self.step or marker.exists():
            return
        marker.write_text(ray.train.get_context().get_experiment_name())
        raise InjectedCrash(f"injected crash at step {step} (test callback)")


# Ray pickles the callback to send it to the workers, which cannot import this test module.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
