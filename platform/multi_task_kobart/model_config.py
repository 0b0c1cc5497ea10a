"""``MultiTaskKoBARTConfig``: the architecture of a MultiTaskKoBART, saved as ``config.json``.

Kept apart from ``model.py`` so that configs can be read, validated and written (by the
training config, the evaluation job, Serve) without building any module.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from transformers import BartConfig

from multi_task_kobart.tasks import TASKS, validate_task

__all__ = ["MultiTaskKoBARTConfig", "CONFIG_NAME", "MODEL_TYPE"]

CONFIG_NAME = "config.json"
MODEL_TYPE = "multi_task_kobart"  # marks our config.json apart from a transformers one


@dataclass
class MultiTaskKoBARTConfig:
    """Architecture of a MultiTaskKoBART; the defaults are KoBART-base (gogamza/kobart-base-v1)."""

    vocab_size: int = 30000
    d_model: int = 768
    encoder_layers: int = 6
    decoder_layers: int = 6
    attention_heads: int = 16
    """Heads in every attention block (encoder and decoders alike)."""
    ffn_dim: int = 3072
    max_position_embeddings: int = 1026
    dropout: float = 0.1
    attention_dropout: float = 0.0
    activation_dropout: float = 0.0
    activation_function: str = "gelu"
    init_std: float = 0.02
    scale_embedding: bool = False
    pad_token_id: int = 3
    bos_token_id: int = 0
    eos_token_id: int = 1
    decoder_start_token_id: int = 1
    tasks: tuple[str, ...] = TASKS
    """Tasks that get a decoder; their order is the router's class order."""
    adapter_rank: int = 0
    """LoRA rank of the per-task encoder adapters; 0 = no adapters."""
    adapter_alpha: float = 16.0
    """LoRA scaling numerator: the adapter output is multiplied by alpha / rank."""
    router: bool = True
    """Add the task-router head (needed for ``task="auto"``)."""
    router_hidden_dim: int = 0
    """0: the router is one Linear layer; > 0: a 2-layer MLP with this hidden size."""

    def __post_init__(self) -> None:
        self.tasks = tuple(self.tasks)  # JSON gives lists
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ValueError(f"tasks must be distinct and non-empty, got {self.tasks}")
        for task in self.tasks:
            validate_task(task)
        if self.d_model % self.attention_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by "
                             f"attention_heads={self.attention_heads}")
        special = (self.pad_token_id, self.bos_token_id, self.eos_token_id, self.decoder_start_token_id)
        if not all(0 <= i < self.vocab_size for i in special):
            raise ValueError(f"special token ids {special} must lie in [0, vocab_size={self.vocab_size})")
        if self.adapter_rank < 0 or self.router_hidden_dim < 0:
            raise ValueError(f"adapter_rank={self.adapter_rank} and router_hidden_dim="
                             f"{self.router_hidden_dim} must be >= 0")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout={self.dropout} must be in [0, 1)")

    @classmethod
    def from_preset(cls, preset: str, vocab_size: int, **overrides: Any) -> MultiTaskKoBARTConfig:
        """``"tiny"``, ``"small"`` or ``"base"`` (KoBART-base dimensions, the class defaults)."""
        if preset == "base":
            return cls(vocab_size=vocab_size, **overrides)
        if preset in ("tiny", "small"):
            return getattr(cls, preset)(vocab_size, **overrides)
        raise ValueError(f"model preset {preset!r} is not valid; allowed: tiny, small, base.")

    @classmethod
    def tiny(cls, vocab_size: int, **overrides: Any) -> MultiTaskKoBARTConfig:
        """Debug preset for tests and smoke runs: 2+2 layers, d_model 64."""
        values = dict(vocab_size=vocab_size, d_model=64, encoder_layers=2, decoder_layers=2,
                      attention_heads=4, ffn_dim=128, max_position_embeddings=512)
        return cls(**{**values, **overrides})

    @classmethod
    def small(cls, vocab_size: int, **overrides: Any) -> MultiTaskKoBARTConfig:
        """Demo preset: 2+2 layers, d_model 128 (~4M parameters with a 6k vocabulary); learns the
        bundled corpus in a few CPU minutes where ``tiny`` mostly learns its surface."""
        values = dict(vocab_size=vocab_size, d_model=128, encoder_layers=2, decoder_layers=2,
                      attention_heads=4, ffn_dim=256, max_position_embeddings=512)
        return cls(**{**values, **overrides})

    def to_bart_config(self) -> BartConfig:
        return BartConfig(
            vocab_size=self.vocab_size, d_model=self.d_model,
            max_position_embeddings=self.max_position_embeddings,
            encoder_layers=self.encoder_layers, decoder_layers=self.decoder_layers,
            encoder_attention_heads=self.attention_heads, decoder_attention_heads=self.attention_heads,
            encoder_ffn_dim=self.ffn_dim, decoder_ffn_dim=self.ffn_dim, dropout=self.dropout,
            attention_dropout=self.attention_dropout, activation_dropout=self.activation_dropout,
            activation_function=self.activation_function, init_std=self.init_std,
            scale_embedding=self.scale_embedding, pad_token_id=self.pad_token_id,
            bos_token_id=self.bos_token_id, eos_token_id=self.eos_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            forced_eos_token_id=None, tie_word_embeddings=True)

    @classmethod
    def from_bart_config(cls, bart: BartConfig, **overrides: Any) -> MultiTaskKoBARTConfig:
        """The architecture of a BART checkpoint (its encoder and decoder must have the same shape)."""
        encoder_shape = (bart.encoder_attention_heads, bart.encoder_ffn_dim)
        if encoder_shape != (bart.decoder_attention_heads, bart.decoder_ffn_dim):
            raise ValueError("encoder and decoder must share attention heads and FFN size, got "
                             f"{bart.encoder_attention_heads}/{bart.encoder_ffn_dim} vs "
                             f"{bart.decoder_attention_heads}/{bart.decoder_ffn_dim}")
        start = bart.decoder_start_token_id if bart.decoder_start_token_id is not None else bart.eos_token_id
        values = dict(
            vocab_size=bart.vocab_size, d_model=bart.d_model, encoder_layers=bart.encoder_layers,
            decoder_layers=bart.decoder_layers, attention_heads=bart.encoder_attention_heads,
            ffn_dim=bart.encoder_ffn_dim, max_position_embeddings=bart.max_position_embeddings,
            dropout=bart.dropout, attention_dropout=bart.attention_dropout,
            activation_dropout=bart.activation_dropout, activation_function=bart.activation_function,
            init_std=bart.init_std, scale_embedding=bool(bart.scale_embedding),
            pad_token_id=bart.pad_token_id, bos_token_id=bart.bos_token_id, eos_token_id=bart.eos_token_id,
            decoder_start_token_id=start)
        return cls(**{**values, **overrides})

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["tasks"] = list(self.tasks)
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> MultiTaskKoBARTConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known - {"model_type"})
        if unknown:
            raise ValueError(f"Unknown MultiTaskKoBARTConfig fields {unknown}; "
                             f"known fields: {sorted(known)}")
        return cls(**{k: v for k, v in values.items() if k in known})

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / CONFIG_NAME
        path.write_text(json.dumps({"model_type": MODEL_TYPE, **self.to_dict()}, indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path) -> MultiTaskKoBARTConfig:
        path = Path(directory) / CONFIG_NAME
        values = json.loads(path.read_text())
        if values.get("model_type") != MODEL_TYPE:
            raise ValueError(f"{path} is not a MultiTaskKoBART config "
                             f"(model_type={values.get('model_type')!r}, expected {MODEL_TYPE!r})")
        return cls.from_dict(values)

    @staticmethod
    def is_saved_in(directory: str | Path) -> bool:
        """True if ``directory`` holds a config written by ``save``."""
        path = Path(directory) / CONFIG_NAME
        if not path.is_file():
            return False
        return json.loads(path.read_text()).get("model_type") == MODEL_TYPE
