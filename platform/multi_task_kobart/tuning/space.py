"""The search space file: which config keys a sweep varies, over what, validated up front.

``tune/space.yaml`` maps dotted config keys (as ``jobs/train.py --set`` spells them) to one
distribution each::

    training.lr: {loguniform: [3.0e-4, 3.0e-3]}
    training.task_weights.style_transfer: {uniform: [0.5, 2.0]}
    training.warmup_steps: {choice: [0, 50, 100]}
    model.adapter_rank: {grid: [0, 4]}          # every value, crossed with the samples

Every key is checked against the experiment config before a trial starts (an unknown key, a
value the config refuses, an empty range and a task weight <= 0 are errors that name the key),
so a typo fails in a second, not after the first trial has trained.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from multi_task_kobart.config import ExperimentConfig, set_value

#: Distribution kinds: numeric ranges ([low, high]) and lists of values.
RANGE_KINDS = ("loguniform", "uniform", "randint")
LIST_KINDS = ("choice", "grid")
KINDS = RANGE_KINDS + LIST_KINDS
#: Keys whose values are loss or sampling weights: a sweep must keep every task in play.
_WEIGHT_PREFIXES = ("training.task_weights.", "data.sampling_weights.")


@dataclass(frozen=True)
class Dimension:
    """One searched config key and its distribution."""

    key: str
    kind: str
    values: tuple[Any, ...]  # [low, high] for ranges, the candidates for lists

    def tune_domain(self) -> Any:
        """The Ray Tune domain (``tune.loguniform(...)``, ``tune.grid_search([...])``...)."""
        from ray import tune

        if self.kind == "grid":
            return tune.grid_search(list(self.values))
        if self.kind == "choice":
            return tune.choice(list(self.values))
        return getattr(tune, self.kind)(*self.values)

    def probes(self) -> list[Any]:
        """Values that exercise the config's own checks: the ends of a range, every listed value."""
        if self.kind == "randint":  # Tune's randint excludes the upper bound
            return [self.values[0], self.values[1] - 1]
        return list(self.values)


@dataclass(frozen=True)
class SearchSpace:
    """The validated dimensions of a sweep, in file order."""

    dimensions: tuple[Dimension, ...]
    source: str = "<dict>"

    @property
    def keys(self) -> list[str]:
        return [d.key for d in self.dimensions]

    @property
    def has_grid(self) -> bool:
        return any(d.kind == "grid" for d in self.dimensions)

    def grid_size(self) -> int:
        return math.prod(len(d.values) for d in self.dimensions if d.kind == "grid")

    def param_space(self) -> dict[str, Any]:
        """The Tuner's ``param_space``: ``{"training.lr": tune.loguniform(...), ...}``."""
        return {d.key: d.tune_domain() for d in self.dimensions}

    def apply(self, raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
        """A copy of the nested config dict ``raw`` with a trial's ``values`` set."""
        out = copy.deepcopy(raw)
        for key in self.keys:
            set_value(out, key, values[key])
        return out

    def to_dict(self) -> dict[str, Any]:
        return {d.key: {d.kind: list(d.values)} for d in self.dimensions}


def load_space(path: str | Path, base: dict[str, Any]) -> SearchSpace:
    """Read and validate a space file against the nested base config dict ``base``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"search space file {str(path)!r} does not exist.")
    raw = yaml.safe_load(path.read_text())
    return parse_space(raw, base, source=str(path))


def parse_space(raw: Any, base: dict[str, Any], source: str = "<dict>") -> SearchSpace:
    """Validate ``{key: {kind: values}}`` against ``base``; errors name the file and key."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"{source}: a search space is a non-empty mapping of config keys to "
                         f"{{kind: values}} (kinds: {', '.join(KINDS)}); got {raw!r}.")
    dimensions = tuple(_dimension(str(key), spec, source) for key, spec in raw.items())
    for dimension in dimensions:
        _check_against_config(dimension, base, source)
    return SearchSpace(dimensions, source)


def _dimension(key: str, spec: Any, source: str) -> Dimension:
    where = f"{source}: {key}"
    if not isinstance(spec, dict) or len(spec) != 1:
        raise ValueError(f"{where}: give exactly one distribution, e.g. {{uniform: [0.5, 2.0]}} "
                         f"(kinds: {', '.join(KINDS)}); got {spec!r}.")
    (kind, values), = spec.items()
    if kind not in KINDS:
        raise ValueError(f"{where}: unknown distribution {kind!r}; allowed: {', '.join(KINDS)}.")
    if not isinstance(values, list) or not values:
        raise ValueError(f"{where}: {kind} needs a non-empty list of values, got {values!r}.")
    if kind in RANGE_KINDS:
        values = _range(where, kind, values)
    if key.startswith(_WEIGHT_PREFIXES):
        low = min(values) if all(isinstance(v, (int, float)) for v in values) else None
        if low is None or low <= 0:
            raise ValueError(f"{where}: every weight must be > 0 (a weight of 0 or less drops "
                             f"or inverts the task); got {values!r}.")
    return Dimension(key, kind, tuple(values))


def _range(where: str, kind: str, values: list[Any]) -> list[Any]:
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in values):
        raise ValueError(f"{where}: {kind} takes [low, high] (two numbers), got {values!r}.")
    low, high = values
    if not low < high:
        raise ValueError(f"{where}: empty range [{low}, {high}]: low must be below high.")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"{where}: loguniform needs low > 0, got {low}.")
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise ValueError(f"{where}: randint takes integer bounds, got {values!r}.")
    return [low, high]


def _check_against_config(dimension: Dimension, base: dict[str, Any], source: str) -> None:
    """Build the experiment config with each probe value: the config's own checks decide."""
    for value in dimension.probes():
        trial = set_value(copy.deepcopy(base), dimension.key, value)
        try:
            ExperimentConfig.from_dict(trial)
        except (ValueError, TypeError) as error:
            raise ValueError(f"{source}: {dimension.key}={value!r} is not a valid config value: "
                             f"{error}") from None
