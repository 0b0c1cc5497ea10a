"""MultiTaskKoBART: one shared KoBART encoder, four task decoders, one tied embedding matrix.

The blocks are Hugging Face's own (``BartScaledWordEmbedding``, ``BartEncoder``,
``BartDecoder``), so beam search, sampling and the KV cache come from transformers'
``GenerationMixin``: ``task_view(task)`` dresses the shared modules up as a plain
``BartForConditionalGeneration`` (no copies) and ``generate`` delegates to it.

One embedding matrix serves the encoder, every decoder and the LM head. transformers 5 builds a
private embedding inside every ``BartEncoder``/``BartDecoder``; we build those on the ``meta``
device (nothing allocated), swap the one shared module in, and only then allocate and initialise.

Freezing: ``freeze_encoder()`` freezes the encoder *and* the shared embedding (the encoder reads
it), which also freezes the tied LM head; the decoders' own layers, the adapters and the router
keep training. The model knows nothing of optimizers, Ray or training loops (torchtitan's rule).

Modes: a fresh ``MultiTaskKoBART()`` is in training mode like any ``nn.Module``; ``from_pretrained``
and ``from_bart`` return eval mode like transformers; ``generate``/``predict_task`` always run with
dropout off and restore every module's mode afterwards. Adapter selection and that mode switch
are per-model state, so one model instance should not generate from several threads at once.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import nn
from transformers import BartForConditionalGeneration, GenerationConfig
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutput, Seq2SeqLMOutput
from transformers.models.bart.modeling_bart import (
    BartDecoder,
    BartEncoder,
    BartScaledWordEmbedding,
    shift_tokens_right,
)

from multi_task_kobart.adapters import EncoderLoRA, RouterHead, TaskAwareCheckpoint
from multi_task_kobart.model_config import (
    MODEL_TYPE,
    MultiTaskKoBARTConfig,
)
from multi_task_kobart.tasks import AUTO, validate_task
from multi_task_kobart.tokenizer import LABEL_PAD

__all__ = ["MultiTaskKoBART", "MultiTaskKoBARTConfig", "MultiTaskSeq2SeqLMOutput", "TaskView",
           "token_cross_entropy"]

logger = logging.getLogger(__name__)
WEIGHTS_NAME = "model.safetensors"
_REDUCTIONS = ("mean", "sum", "none")


def token_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, reduction: str = "mean",
                        label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of (..., vocab) ``logits`` against (...) ``labels``, skipping ``LABEL_PAD``.

    The one definition of the token loss (model forward, training objective, evaluation NLL).
    Logits are upcast to float32 first: a bf16/fp16 log-softmax over a 30k vocabulary loses the
    small probabilities that perplexity is made of. ``reduction="none"`` returns one value per
    position (0 at padded ones), flattened.
    """
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction={reduction!r}; allowed: {', '.join(map(repr, _REDUCTIONS))}.")
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} do not match: "
                         "logits must be labels' shape plus a vocabulary dimension.")
    return F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), labels.reshape(-1),
                           ignore_index=LABEL_PAD, reduction=reduction, label_smoothing=label_smoothing)


@dataclass
class MultiTaskSeq2SeqLMOutput(Seq2SeqLMOutput):
    """``Seq2SeqLMOutput`` plus the router's (batch, n_tasks) logits (None without a router)."""

    router_logits: torch.Tensor | None = None


class TaskView(BartForConditionalGeneration):
    """A ``BartForConditionalGeneration`` whose modules belong to a ``MultiTaskKoBART``.

    It only adds one thing: its task's encoder adapters (if any) are active while it runs. Save a
    task with ``MultiTaskKoBART.export_task`` (adapters merged), not with the view's save_pretrained.
    """

    def _adapter_scope(self) -> AbstractContextManager[None]:
        lora, task = self.__dict__.get("_mtk_lora"), self.__dict__.get("_mtk_task")
        return nullcontext() if lora is None else lora.activate(task)

    # wraps(): generate() validates its kwargs against forward's signature, so keep BART's.
    @functools.wraps(BartForConditionalGeneration.forward)
    def forward(self, *args: Any, **kwargs: Any) -> Seq2SeqLMOutput:
        with self._adapter_scope():
            return super().forward(*args, **kwargs)

    @functools.wraps(BartForConditionalGeneration.generate)
    def generate(self, *args: Any, **kwargs: Any) -> Any:
        with self._adapter_scope():
            return super().generate(*args, **kwargs)


class MultiTaskKoBART(nn.Module):
    """Shared embedding + ``BartEncoder``, one ``BartDecoder`` per task, tied LM head, router."""

    def __init__(self, config: MultiTaskKoBARTConfig | None = None, *,
                 device: torch.device | str | None = None, init_weights: bool = True) -> None:
        super().__init__()
        self.config = config if config is not None else MultiTaskKoBARTConfig()
        self.bart_config = self.config.to_bart_config()
        cfg = self.config
        with torch.device("meta"):  # shapes only: throw-away embeddings cost nothing here
            scale = cfg.d_model**0.5 if cfg.scale_embedding else 1.0
            self.shared = BartScaledWordEmbedding(cfg.vocab_size, cfg.d_model, cfg.pad_token_id, scale)
            self.encoder = BartEncoder(self.bart_config)
            self.decoders = nn.ModuleDict({task: BartDecoder(self.bart_config) for task in cfg.tasks})
            self.router = (RouterHead(cfg.d_model, len(cfg.tasks), cfg.router_hidden_dim)
                           if cfg.router else None)
            self.adapters = (EncoderLoRA(cfg.encoder_layers, cfg.d_model, cfg.tasks, cfg.adapter_rank,
                                         cfg.adapter_alpha) if cfg.adapter_rank > 0 else None)
        for stack in (self.encoder, *self.decoders.values()):
            stack.embed_tokens = self.shared
        if self.adapters is not None:
            self.adapters.attach(self.encoder)
        self._views: dict[str, TaskView] = {}  # plain dict: views must not become submodules
        device = torch.device(device if device is not None else "cpu")
        if device.type != "meta":
            self.to_empty(device=device)  # keeps Parameter identity, so the tie survives
            if init_weights:
                self.reset_parameters()

    # ----------------------------------------------------------------------------- init
    @torch.no_grad()
    def reset_parameters(self) -> None:
        """BART's initialisation: N(0, init_std) weights, zero biases, unit LayerNorms, zero pad row."""
        std = self.config.init_std
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.weight.normal_(0.0, std)
                if module.bias is not None:
                    module.bias.zero_()
            elif isinstance(module, nn.Embedding):
                module.weight.normal_(0.0, std)
                if module.padding_idx is not None:
                    module.weight[module.padding_idx].zero_()
            elif isinstance(module, nn.LayerNorm):
                module.weight.fill_(1.0)
                module.bias.zero_()
        self._reset_task_heads()

    @torch.no_grad()
    def _reset_task_heads(self) -> None:
        """Initialise the parts a BART checkpoint does not have (router, adapters)."""
        if self.router is not None:
            for module in self.router.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0.0, self.config.init_std)
                    module.bias.zero_()
        if self.adapters is not None:
            self.adapters.reset_parameters()

    # ----------------------------------------------------------------------------- tasks
    def _check_task(self, task: str) -> str:
        validate_task(task)
        if task not in self.decoders:
            raise ValueError(f"Task {task!r} has no decoder in this model; it has {list(self.decoders)}")
        return task

    def adapter_scope(self, task: str | None) -> AbstractContextManager[None]:
        """Context in which the encoder runs with ``task``'s adapters (``None``: bare encoder)."""
        return nullcontext() if self.adapters is None else self.adapters.activate(task)

    @contextmanager
    def _eval_mode(self) -> Iterator[None]:
        # Inference never wants dropout; remember each module's own mode to restore it exactly.
        modes = [(module, module.training) for module in self.modules()]
        self.eval()
        try:
            yield
        finally:
            for module, mode in modes:
                module.training = mode

    # ----------------------------------------------------------------------------- forward
    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None,
               task: str | None = None) -> BaseModelOutput:
        """Shared-encoder states (with ``task``'s adapters when the model has them)."""
        if task is not None:
            self._check_task(task)
        with self.adapter_scope(task):
            return self.encoder(input_ids=input_ids, attention_mask=attention_mask)

    def forward(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                task: str | None = None, labels: torch.Tensor | None = None,
                decoder_input_ids: torch.Tensor | None = None,
                decoder_attention_mask: torch.Tensor | None = None,
                encoder_outputs: BaseModelOutput | torch.Tensor | None = None,
                return_router_logits: bool = True) -> MultiTaskSeq2SeqLMOutput:
        """Teacher-forced pass through ``task``'s decoder; loss = mean CE over labels != LABEL_PAD."""
        task = self._check_task(task)
        if encoder_outputs is None:
            encoder_outputs = self.encode(input_ids, attention_mask, task)
        encoder_outputs = _as_encoder_output(encoder_outputs)
        if decoder_input_ids is None:
            if labels is None:
                raise ValueError("forward needs labels or decoder_input_ids; got neither")
            # shift_tokens_right also turns LABEL_PAD into the pad id
            decoder_input_ids = shift_tokens_right(labels, self.config.pad_token_id,
                                                   self.config.decoder_start_token_id)
        decoded = self.decoders[task](
            input_ids=decoder_input_ids, attention_mask=decoder_attention_mask,
            encoder_hidden_states=encoder_outputs.last_hidden_state, encoder_attention_mask=attention_mask,
            use_cache=False)
        logits = F.linear(decoded.last_hidden_state, self.shared.weight)  # tied LM head
        loss = None
        if labels is not None:
            loss = token_cross_entropy(logits, labels)
        router_logits = None
        if return_router_logits and self.router is not None:
            router_logits = self._router_logits(input_ids, attention_mask, encoder_outputs)
        return MultiTaskSeq2SeqLMOutput(loss=loss, logits=logits, router_logits=router_logits,
                                        encoder_last_hidden_state=encoder_outputs.last_hidden_state)

    def _router_logits(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                       encoder_outputs: BaseModelOutput) -> torch.Tensor:
        # The router must see what it sees at inference: the encoder without any adapter.
        states = encoder_outputs.last_hidden_state
        if self.adapters is not None and input_ids is not None:
            with torch.no_grad():
                states = self.encode(input_ids, attention_mask).last_hidden_state
        return self.router(states, attention_mask)

    # ----------------------------------------------------------------------------- routing
    @torch.no_grad()
    def predict_task(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                     encoder_outputs: BaseModelOutput | torch.Tensor | None = None) -> list[str]:
        """Router's task name per example (``encoder_outputs`` must come from ``encode(..., task=None)``)."""
        if self.router is None:
            raise ValueError("This model has no router (config.router=False); pass an explicit task")
        if attention_mask is None and input_ids is not None:  # do not average over padding
            attention_mask = input_ids.ne(self.config.pad_token_id).long()
        with self._eval_mode():
            if encoder_outputs is None:
                encoder_outputs = self.encode(input_ids, attention_mask)
            logits = self.router(_as_encoder_output(encoder_outputs).last_hidden_state, attention_mask)
        return [self.config.tasks[i] for i in logits.argmax(dim=-1).tolist()]

    # ----------------------------------------------------------------------------- generation
    @property
    def generation_config(self) -> GenerationConfig:
        """KoBART decoding ids; BART's forced BOS/EOS are deliberately left unset."""
        cfg = self.config
        return GenerationConfig(bos_token_id=cfg.bos_token_id, eos_token_id=cfg.eos_token_id,
                                pad_token_id=cfg.pad_token_id,
                                decoder_start_token_id=cfg.decoder_start_token_id,
                                forced_bos_token_id=None, forced_eos_token_id=None)

    def task_view(self, task: str) -> TaskView:
        """A ``BartForConditionalGeneration`` for ``task`` sharing (never copying) this model's weights."""
        task = self._check_task(task)
        view = self._views.get(task)
        if view is None or not self._view_is_current(view, task):
            view = self._views[task] = self._build_view(task)
        return view

    def _build_view(self, task: str) -> TaskView:
        with torch.device("meta"):
            view = TaskView(self.config.to_bart_config())
        view.model.shared = self.shared
        view.model.encoder = self.encoder
        view.model.decoder = self.decoders[task]
        view.lm_head.weight = self.shared.weight
        weight = self.shared.weight
        view.final_logits_bias = torch.zeros(1, weight.shape[0], device=weight.device, dtype=weight.dtype)
        view.generation_config = self.generation_config
        view.__dict__["_mtk_lora"], view.__dict__["_mtk_task"] = self.adapters, task
        return view

    def _view_is_current(self, view: TaskView, task: str) -> bool:
        # .to()/.half() move tensors in place but not the view's own bias; load_state_dict(assign=True)
        # may replace Parameters. Either way a stale view is rebuilt (cheap: built on meta).
        bias, weight = view.final_logits_bias, self.shared.weight
        return (view.model.shared is self.shared and view.model.encoder is self.encoder
                and view.model.decoder is self.decoders[task] and view.lm_head.weight is weight
                and bias.device == weight.device and bias.dtype == weight.dtype
                and view.__dict__.get("_mtk_lora") is self.adapters)

    def generate(self, input_ids: torch.Tensor | None = None, attention_mask: torch.Tensor | None = None,
                 task: str | None = None, encoder_outputs: BaseModelOutput | torch.Tensor | None = None,
                 **generate_kwargs: Any) -> torch.LongTensor:
        """Decode with ``task``'s decoder (``"auto"``: the router picks per example); dropout is off.

        ``encoder_outputs`` (from ``encode(..., task)``) skips the encoder; pass the matching
        ``attention_mask`` for padded batches. Other kwargs go to transformers' ``generate``.
        """
        task = validate_task(task, allow_auto=True)
        if encoder_outputs is not None:  # a fresh object: generate() expands it in place for beams
            states = _as_encoder_output(encoder_outputs).last_hidden_state
            encoder_outputs = BaseModelOutput(last_hidden_state=states)
        if task == AUTO:
            return self._generate_routed(input_ids, attention_mask, encoder_outputs, **generate_kwargs)
        view = self.task_view(task)
        with self._eval_mode():
            return view.generate(input_ids=input_ids, attention_mask=attention_mask,
                                 encoder_outputs=encoder_outputs, **generate_kwargs)

    def _generate_routed(self, input_ids: torch.Tensor | None, attention_mask: torch.Tensor | None,
                         encoder_outputs: BaseModelOutput | None, **generate_kwargs: Any) -> torch.LongTensor:
        """Route each example, decode each task's group as one batch, restore the input order."""
        if generate_kwargs.get("return_dict_in_generate"):
            raise ValueError("task='auto' returns token ids only; return_dict_in_generate is not supported")
        if attention_mask is None and input_ids is not None:  # what transformers' generate would infer
            attention_mask = input_ids.ne(self.config.pad_token_id).long()
        if self.adapters is not None:
            if input_ids is None:
                raise ValueError("task='auto' with adapters needs input_ids "
                                 "(each task re-encodes them with its own adapter)")
            encoder_outputs = None  # adapted states differ per task; the router reads the bare ones
        elif encoder_outputs is None:  # no adapters: one encoder pass serves router and decoders
            with torch.no_grad(), self._eval_mode():
                encoder_outputs = self.encode(input_ids, attention_mask)
        routed = self.predict_task(input_ids, attention_mask, encoder_outputs)
        rows_out: dict[int, torch.Tensor] = {}
        for task in dict.fromkeys(routed):
            rows = [i for i, name in enumerate(routed) if name == task]
            sub_outputs = None if encoder_outputs is None else BaseModelOutput(
                last_hidden_state=_select_rows(encoder_outputs.last_hidden_state, rows))
            out = self.generate(_select_rows(input_ids, rows), _select_rows(attention_mask, rows), task,
                                sub_outputs, **generate_kwargs)
            per_row = out.shape[0] // len(rows)  # > 1 with num_return_sequences
            for j, row in enumerate(rows):
                rows_out[row] = out[j * per_row:(j + 1) * per_row]
        return _pad_rows([rows_out[i] for i in range(len(routed))], self.config.pad_token_id)

    # ----------------------------------------------------------------------------- parameters
    def freeze_encoder(self) -> None:
        """Freeze the encoder and the shared (tied) embedding; decoders, adapters, router still train."""
        for param in self.encoder_parameters():
            param.requires_grad_(False)

    def unfreeze_encoder(self) -> None:
        for param in self.encoder_parameters():
            param.requires_grad_(True)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Encoder parameters, the shared embedding included (first)."""
        return list(self.encoder.parameters())

    def get_decoder_parameters(self, task: str) -> list[nn.Parameter]:
        """``task``'s decoder parameters minus the shared embedding (that one is an encoder parameter)."""
        shared = self.shared.weight
        return [p for p in self.decoders[self._check_task(task)].parameters() if p is not shared]

    def get_task_parameters(self, task: str) -> list[nn.Parameter]:
        """Everything that belongs to ``task`` alone: its decoder plus its encoder adapters."""
        adapters = self.adapters.task_parameters(task) if self.adapters is not None else []
        return self.get_decoder_parameters(task) + adapters

    def router_parameters(self) -> list[nn.Parameter]:
        return list(self.router.parameters()) if self.router is not None else []

    def num_parameters(self) -> dict[str, Any]:
        """Parameter counts; every tensor is counted once, so ``total`` == unique parameters."""
        count = lambda params: sum(p.numel() for p in params)  # noqa: E731
        embedding = self.shared.weight.numel()
        encoder = count(self.encoder_parameters()) - embedding
        router = count(self.router_parameters())
        per_task = {task: count(self.get_task_parameters(task)) for task in self.decoders}
        adapters = ({task: count(self.adapters.task_parameters(task)) for task in self.decoders}
                    if self.adapters is not None else {})
        shared = embedding + encoder + router
        return {"embedding": embedding, "encoder": encoder, "router": router, "shared": shared,
                "per_task": per_task, "adapters": adapters, "total": shared + sum(per_task.values())}

    def gradient_checkpointing_enable(self) -> None:
        """Recompute encoder/decoder layer activations in backward (non-reentrant, adapter-aware)."""
        self._set_checkpointing(True)

    def gradient_checkpointing_disable(self) -> None:
        self._set_checkpointing(False)

    def _set_checkpointing(self, enable: bool) -> None:
        checkpoint_func = TaskAwareCheckpoint(self.adapters)
        # Only the layers get the flag: on the stacks it only makes transformers warn about use_cache.
        for stack in (self.encoder, *self.decoders.values()):
            for layer in stack.modules():
                if isinstance(layer, GradientCheckpointingLayer):
                    layer.gradient_checkpointing = enable
                    layer._gradient_checkpointing_func = checkpoint_func

    @property
    def is_gradient_checkpointing(self) -> bool:
        return any(getattr(m, "gradient_checkpointing", False) for m in self.encoder.layers)

    # ----------------------------------------------------------------------------- I/O
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``model.safetensors`` (tied tensors stored once) and ``config.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.config.save(directory)
        save_model(self, str(directory / WEIGHTS_NAME),
                   metadata={"format": "pt", "model_type": MODEL_TYPE})
        return directory

    @classmethod
    def from_pretrained(cls, path_or_hub_id: str | Path, *,
                        device: torch.device | str = "cpu") -> MultiTaskKoBART:
        """Load a ``save_pretrained`` directory (eval mode); anything else goes to ``from_bart``."""
        directory = Path(path_or_hub_id)
        if not MultiTaskKoBARTConfig.is_saved_in(directory):
            return cls.from_bart(path_or_hub_id).to(device)
        weights = directory / WEIGHTS_NAME
        if not weights.is_file():
            raise FileNotFoundError(f"{weights} is missing; expected a MultiTaskKoBART.save_pretrained "
                                    "directory")
        model = cls(MultiTaskKoBARTConfig.load(directory), device=device, init_weights=False)
        load_model(model, str(weights), strict=True, device=str(device))
        return model.eval()

    @classmethod
    def from_bart(cls, path_or_hub_id: str | Path, **config_overrides: Any) -> MultiTaskKoBART:
        """Start from a BART/KoBART checkpoint: its encoder, its decoder copied into every task decoder.

        ``config_overrides`` set fields the BART config lacks (e.g. ``adapter_rank=8``, ``tasks=...``).
        """
        bart = BartForConditionalGeneration.from_pretrained(str(path_or_hub_id))
        config = MultiTaskKoBARTConfig.from_bart_config(bart.config, **config_overrides)
        model = cls(config, init_weights=False)
        model.load_bart_weights(bart)
        model._reset_task_heads()
        return model.eval()

    @torch.no_grad()
    def load_bart_weights(self, bart: BartForConditionalGeneration) -> None:
        """Copy a BART model's embedding, encoder and decoder (into every task decoder) exactly."""
        if bart.final_logits_bias.abs().max().item() > 0:
            logger.warning("Dropping the checkpoint's non-zero final_logits_bias: the LM head has no bias")
        if not torch.equal(bart.lm_head.weight, bart.model.shared.weight):
            logger.warning("The checkpoint's lm_head differs from its embedding; the embedding is used")
        self.shared.weight.copy_(bart.model.shared.weight)
        self.encoder.load_state_dict(bart.model.encoder.state_dict(), strict=True)
        decoder_state = bart.model.decoder.state_dict()
        for decoder in self.decoders.values():
            decoder.load_state_dict(decoder_state, strict=True)

    def export_task(self, task: str, directory: str | Path) -> Path:
        """Write ``task`` as a plain ``BartForConditionalGeneration`` (adapters merged), with its
        generation config; it loads with transformers alone."""
        view_state = self.task_view(task).state_dict()
        state = {name: tensor.detach().to("cpu") for name, tensor in view_state.items()}
        if self.adapters is not None:
            for name, delta in self.adapters.merged_deltas(task).items():
                key = f"model.encoder.{name}"
                state[key] = state[key] + delta.to("cpu", state[key].dtype)
        with torch.device("meta"):
            export = BartForConditionalGeneration(self.config.to_bart_config())
        export.to_empty(device="cpu").to(self.shared.weight.dtype)  # to_empty keeps the tie
        export.load_state_dict(state, strict=True)
        export.generation_config = self.generation_config
        directory = Path(directory)
        export.save_pretrained(directory)
        return directory

    def __getstate__(self) -> dict[str, Any]:
        # Views are caches over our own modules; pickles and deep copies rebuild them on demand.
        state = self.__dict__.copy()
        state["_views"] = {}
        return state


def _as_encoder_output(encoder_outputs: BaseModelOutput | torch.Tensor | tuple) -> BaseModelOutput:
    if isinstance(encoder_outputs, BaseModelOutput):
        return encoder_outputs
    if isinstance(encoder_outputs, torch.Tensor):
        return BaseModelOutput(last_hidden_state=encoder_outputs)
    return BaseModelOutput(last_hidden_state=encoder_outputs[0])


def _select_rows(tensor: torch.Tensor | None, rows: list[int]) -> torch.Tensor | None:
    if tensor is None:
        return None
    return tensor.index_select(0, torch.tensor(rows, device=tensor.device))


def _pad_rows(rows: list[torch.Tensor], pad_id: int) -> torch.LongTensor:
    """Stack (n_i, len_i) pieces into one (sum n_i, max len) tensor, right-padded with ``pad_id``."""
    width = max(piece.shape[1] for piece in rows)
    out = rows[0].new_full((sum(piece.shape[0] for piece in rows), width), pad_id)
    start = 0
    for piece in rows:
        out[start:start + piece.shape[0], :piece.shape[1]] = piece
        start += piece.shape[0]
    return out
