"""Default decoding settings: the one home for how the model generates unless told otherwise.

The demo, the evaluation (job and end-of-training), the MLflow pyfunc and the Serve
deployments all start from :data:`DEFAULT_GENERATION`, so a model answers the same input
the same way wherever it runs. Greedy decoding of a small model loops on short n-grams
("...가비가비가비..."); ``no_repeat_ngram_size`` forbids any n-gram twice and
``repetition_penalty`` (CTRL, Keskar et al. 2019) discounts tokens already produced.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationSettings:
    """Keyword arguments for ``MultiTaskKoBART.generate`` that every caller shares."""

    max_new_tokens: int = 48
    """Upper bound on generated tokens (after the decoder start token)."""
    num_beams: int = 1
    """Beam width; 1 is greedy decoding."""
    no_repeat_ngram_size: int = 3
    """No n-gram of this size appears twice in an output; 0 disables the rule."""
    repetition_penalty: float = 1.2
    """Logit divisor for tokens already generated (1.0 = no penalty)."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1 or self.num_beams < 1:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} and num_beams={self.num_beams} "
                             "must both be >= 1.")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size={self.no_repeat_ngram_size} must be >= 0.")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty={self.repetition_penalty} must be > 0.")

    def kwargs(self) -> dict[str, Any]:
        """The settings as ``generate`` keyword arguments."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "GenerationSettings":
        """A copy with some settings changed (None values are ignored)."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def with_params(self, params: Mapping[str, Any] | None) -> "GenerationSettings":
        """A copy with request parameters applied (MLflow pyfunc ``params``, an HTTP body).

        Values arrive as JSON or strings, so each is converted to its field's type; an unknown
        name or a value that does not convert is a ``ValueError`` naming what is allowed.
        """
        changes: dict[str, Any] = {}
        for name, value in (params or {}).items():
            if name not in _FIELD_NAMES:
                raise ValueError(f"unknown generation parameter {name!r}; allowed: "
                                 f"{', '.join(_FIELD_NAMES)}.")
            kind = type(getattr(self, name))
            try:
                changes[name] = kind(value)
            except (TypeError, ValueError):
                raise ValueError(f"generation parameter {name}={value!r} is not of type {kind.__name__}.") from None
            if kind is int and changes[name] != float(value):  # 1.5 beams is a mistake, not 1
                raise ValueError(f"generation parameter {name}={value!r} must be a whole number.")
        return dataclasses.replace(self, **changes)


_FIELD_NAMES = tuple(field.name for field in dataclasses.fields(GenerationSettings))


DEFAULT_GENERATION = GenerationSettings()
