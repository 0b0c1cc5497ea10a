"""The Ray-free core of the Serve application: load what a replica needs, encode and decode batches.

The Serve deployments (``deployments.py``) only add batching queues, handles and HTTP around the
two classes here, so everything that touches tensors is plain torch + numpy and runs in one process:

* :class:`EncoderCore` runs the shared encoder once over all rows of a batch of requests (once per
  task when the model has per-task adapters) and the router for ``task="auto"``; it hands each
  request an :class:`Encoded`: float32 numpy states, a uint8 mask, cut to that request's own width.
* :class:`DecoderCore` groups a batch of :class:`DecodeJob` by (task, decoding settings), pads the
  states of each group into one tensor and runs one ``generate`` per group.

A replica loads only its parts of the checkpoint (:func:`load_model`): the encoder replica the
embedding, encoder, router and adapters; a decoder replica the embedding and its own decoder; a
colocated replica all of them. The rest stays on the ``meta`` device and costs no memory. On CPU
the tensors stay in safetensors' memory map of the file, so replicas on one node that read the same
file share those pages (PSS counts them once); :meth:`EncoderCore.warm_up` and
:meth:`DecoderCore.warm_up` page them in before a replica takes traffic. (Measured: generation
is as fast on mapped weights as on copies.)

Every encoding carries the id of the weights that made it and decoders refuse states from other
weights (:class:`ModelMismatch`): during a rollout an old decoder never decodes new states.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import safe_open

from multi_task_kobart.data.batching import pad_sources
from multi_task_kobart.model import WEIGHTS_NAME, MultiTaskKoBART
from multi_task_kobart.model_config import CONFIG_NAME, MultiTaskKoBARTConfig
from multi_task_kobart.tokenizer import BOS_ID, EOS_ID, PAD_ID

#: Key of the one encoding that serves every task (a model without per-task adapters).
SHARED = "*"
#: Submodules the encoder replica needs (missing ones, e.g. no adapters, are skipped).
ENCODER_PARTS = ("shared", "encoder", "router", "adapters")
#: Decoding settings as a hashable, sorted tuple of (name, value) pairs.
Settings = tuple[tuple[str, Any], ...]


class ModelMismatch(RuntimeError):
    """States or token ids came from other weights or another tokenizer (a rollout in progress)."""


def decoder_parts(tasks: Sequence[str]) -> tuple[str, ...]:
    """Submodules a decoder replica for ``tasks`` needs: the tied embedding and those decoders."""
    return ("shared", *(f"decoders.{task}" for task in tasks))


def load_model(directory: str | Path, parts: Sequence[str] | None = None, *,
               device: str = "cpu") -> MultiTaskKoBART:
    """The checkpoint's model in eval mode; with ``parts``, only those submodules hold weights.

    Tied tensors are stored once under any one of their names, so each tensor is looked up under
    all of its aliases. Parts not in ``parts`` stay on the meta device (no memory).
    """
    directory = Path(directory)
    if parts is None:
        return MultiTaskKoBART.from_pretrained(directory, device=device).eval()
    model = MultiTaskKoBART(MultiTaskKoBARTConfig.load(directory), device="meta")
    for name in parts:
        module = _submodule(model, name)
        if module is not None:
            module.to_empty(device=device)
    _load_tensors(model, directory / WEIGHTS_NAME, device)
    return model.eval()


def _submodule(model: MultiTaskKoBART, name: str) -> torch.nn.Module | None:
    head, _, rest = name.partition(".")
    if head == "decoders" and rest not in model.decoders:
        raise ValueError(f"this checkpoint has no decoder for task {rest!r}; it has {list(model.decoders)}.")
    return model.get_submodule(name) if getattr(model, head, None) is not None else None


def _load_tensors(model: MultiTaskKoBART, weights: Path, device: str) -> None:
    state = model.state_dict(keep_vars=True)
    aliases: dict[int, list[str]] = {}
    for name, tensor in state.items():
        aliases.setdefault(id(tensor), []).append(name)
    with safe_open(str(weights), framework="pt") as handle:
        stored = set(handle.keys())
        for names in aliases.values():
            tensor = state[names[0]]
            if tensor.is_meta:
                continue
            key = next((name for name in names if name in stored), None)
            if key is None:
                raise KeyError(f"{weights} has no tensor for {names[0]!r}; is it a MultiTaskKoBART checkpoint?")
            # On CPU this keeps safetensors' memory map of the file (no copy): replicas on
            # one node that read the same file share its pages. Never rewrite a served file in place.
            tensor.data = handle.get_tensor(key).to(device=device, dtype=tensor.dtype)


def loaded_bytes(model: torch.nn.Module) -> int:
    """Bytes of parameters and buffers that hold data (meta tensors excluded), each counted once."""
    seen = {id(t): t for t in [*model.parameters(), *model.buffers()] if not t.is_meta}
    return sum(t.numel() * t.element_size() for t in seen.values())


def model_fingerprint(directory: str | Path) -> str:
    """sha256 (16 hex digits) of the config and the weights: which weights made an encoding."""
    digest = hashlib.sha256()
    for name in (CONFIG_NAME, WEIGHTS_NAME):
        with open(Path(directory) / name, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 22), b""):
                digest.update(chunk)
    return digest.hexdigest()[:16]


def set_torch_threads(num_cpus: float, threads: int | None = None) -> int:
    """Set torch's intra-op threads from the replica's CPU share (or ``threads``) and return it.

    Ray exports OMP_NUM_THREADS=1 for fractional shares; torch would then use one thread even
    where a replica holds 1.5 CPUs, so the count is set explicitly: ceil(share), at least 1.
    """
    count = threads if threads is not None else max(1, math.ceil(num_cpus))
    torch.set_num_threads(count)
    return count


@dataclass
class EncodeJob:
    """One request's rows for the encoder. ``tasks``: the decoders that will read the states
    (matters only with per-task adapters); ``route``: run the router (``task="auto"``)."""

    token_ids: list[list[int]]
    tasks: tuple[str, ...] = ()
    route: bool = False
    tokenizer_id: str = ""
    enqueued_at: float = 0.0


@dataclass
class EncodedPart:
    """Encoder states for some rows of a request: ``states[i]`` belongs to row ``rows[i]``."""

    rows: list[int]
    states: np.ndarray  # (len(rows), width, d_model) float32


@dataclass
class Encoded:
    """What the encoder hands the decoders for one request: numpy arrays, no torch objects."""

    model_id: str
    mask: np.ndarray  # (rows, width) uint8
    parts: dict[str, EncodedPart]  # key: a task name, or SHARED
    routed: list[str] | None = None
    passes: int = 1
    stats: dict[str, float] = field(default_factory=dict)

    def rows_for(self, task: str, rows: Sequence[int] | None) -> tuple[np.ndarray, np.ndarray]:
        """(states, mask) of ``rows`` (None: every row the part holds) as ``task`` must read them."""
        part = self.parts.get(task) or self.parts.get(SHARED)
        if part is None:
            raise ValueError(f"no encoding for task {task!r}; encoded for {sorted(self.parts)}.")
        wanted = list(part.rows) if rows is None else list(rows)
        position = {row: index for index, row in enumerate(part.rows)}
        missing = [row for row in wanted if row not in position]
        if missing:
            raise ValueError(f"rows {missing} were not encoded for task {task!r}.")
        return part.states[[position[row] for row in wanted]], self.mask[wanted]


@dataclass
class DecodeJob:
    encoded: Encoded
    task: str
    rows: list[int] | None = None
    settings: Settings = ()
    enqueued_at: float = 0.0


@dataclass
class Decoded:
    """Generated ids per row (decoder start, body, ``</s>``; trailing pads dropped)."""

    task: str
    token_ids: list[list[int]]
    model_id: str
    stats: dict[str, float] = field(default_factory=dict)
    encoder_stats: dict[str, float] = field(default_factory=dict)
    encoder_passes: int = 1
    model: dict[str, Any] = field(default_factory=dict)  # the replica's model info (deployments fill it)


def _batch_stats(jobs: Sequence[Any], started: float, rows: int) -> list[dict[str, float]]:
    done = time.monotonic()
    return [{"queue_ms": max(0.0, (started - job.enqueued_at) * 1e3), "compute_ms": (done - started) * 1e3,
             "batch_requests": len(jobs), "batch_rows": rows} for job in jobs]


class EncoderCore:
    """Shared encoder + router over batches of :class:`EncodeJob`."""

    def __init__(self, model: MultiTaskKoBART, model_id: str, tokenizer_id: str) -> None:
        self.model, self.model_id, self.tokenizer_id = model, model_id, tokenizer_id
        self.has_adapters = model.adapters is not None
        self.device = model.shared.weight.device

    def warm_up(self) -> None:
        """One tiny batch: pages the weights in from the file before the replica takes traffic."""
        self.encode_batch([EncodeJob([[BOS_ID, EOS_ID]], tuple(self.model.decoders)[:1], self.model.router is not None,
                                     self.tokenizer_id)])

    def check(self, job: EncodeJob) -> None:
        """Refuse a job before it joins a batch (a bad job must not fail its batch-mates)."""
        if job.tokenizer_id != self.tokenizer_id:
            raise ModelMismatch(f"token ids from tokenizer {job.tokenizer_id!r}; this encoder reads "
                                f"{self.tokenizer_id!r}.")
        if not job.token_ids or any(not row for row in job.token_ids):
            raise ValueError("an encode job needs at least one non-empty row of token ids.")
        if job.route and self.model.router is None:
            raise ValueError("this model has no router (config.router=False): task='auto' is unavailable.")
        for task in job.tasks:
            if task not in self.model.decoders:
                raise ValueError(f"task {task!r} has no decoder in this model; it has {list(self.model.decoders)}.")

    @torch.inference_mode()
    def encode_batch(self, jobs: Sequence[EncodeJob]) -> list[Encoded]:
        started = time.monotonic()
        starts = np.cumsum([0] + [len(job.token_ids) for job in jobs]).tolist()
        input_ids, mask = pad_sources([row for job in jobs for row in job.token_ids], PAD_ID)
        input_ids, mask = input_ids.to(self.device), mask.to(self.device)
        bare = routed = None
        if not self.has_adapters or any(job.route for job in jobs):
            bare = self.model.encode(input_ids, mask).last_hidden_state
        if any(job.route for job in jobs):
            routed = self.model.predict_task(attention_mask=mask, encoder_outputs=bare)
        wanted = self._adapter_rows(jobs, starts, routed) if self.has_adapters else {}
        adapted = {task: self.model.encode(input_ids[rows], mask[rows], task).last_hidden_state
                   for task, rows in wanted.items()}
        stats = _batch_stats(jobs, started, len(input_ids))
        return [self._encoded(job, range(starts[i], starts[i + 1]), mask, bare, adapted, wanted, routed, stats[i])
                for i, job in enumerate(jobs)]

    @staticmethod
    def _adapter_rows(jobs: Sequence[EncodeJob], starts: list[int],
                      routed: list[str] | None) -> dict[str, list[int]]:
        """Batch rows each task's adapter must encode: one encoder pass per task for the batch."""
        wanted: dict[str, list[int]] = {}
        for index, job in enumerate(jobs):
            for row in range(starts[index], starts[index + 1]):
                for task in ([routed[row]] if job.route else job.tasks):
                    wanted.setdefault(task, []).append(row)
        return wanted

    def _encoded(self, job: EncodeJob, rows: range, mask: torch.Tensor, bare: torch.Tensor | None,
                 adapted: dict[str, torch.Tensor], wanted: dict[str, list[int]],
                 routed: list[str] | None, stats: dict[str, float]) -> Encoded:
        width = max(len(ids) for ids in job.token_ids)  # this request's own width, not the batch's
        job_routed = routed[rows.start:rows.stop] if job.route else None
        parts: dict[str, EncodedPart] = {}
        if not self.has_adapters:
            parts[SHARED] = EncodedPart(list(range(len(rows))), _to_numpy(bare[rows.start:rows.stop, :width]))
        for task, batch_rows in wanted.items():
            picked = [i for i, row in enumerate(batch_rows) if rows.start <= row < rows.stop]
            if picked:
                parts[task] = EncodedPart([batch_rows[i] - rows.start for i in picked],
                                          _to_numpy(adapted[task][picked, :width]))
        passes = len(parts) + (1 if self.has_adapters and job.route else 0)
        return Encoded(self.model_id, mask[rows.start:rows.stop, :width].to(torch.uint8).cpu().numpy(),
                       parts, job_routed, passes, stats)


def _to_numpy(states: torch.Tensor) -> np.ndarray:
    return np.ascontiguousarray(states.detach().float().cpu().numpy())


class DecoderCore:
    """Batched ``generate`` for the tasks whose decoders this replica holds."""

    def __init__(self, model: MultiTaskKoBART, model_id: str, tasks: Sequence[str]) -> None:
        self.model, self.model_id, self.tasks = model, model_id, tuple(tasks)
        self.device, self.dtype = model.shared.weight.device, model.shared.weight.dtype

    def warm_up(self) -> None:
        """Two tokens per task from zero states: pages the decoder weights in before traffic."""
        d_model = self.model.config.d_model
        encoded = Encoded(self.model_id, np.ones((1, 2), np.uint8),
                          {SHARED: EncodedPart([0], np.zeros((1, 2, d_model), np.float32))})
        self.decode_batch([DecodeJob(encoded, task, None, (("max_new_tokens", 2),)) for task in self.tasks])

    def check(self, job: DecodeJob) -> None:
        if job.task not in self.tasks:
            raise ValueError(f"this decoder serves {list(self.tasks)}, not {job.task!r}.")
        if job.encoded.model_id != self.model_id:
            raise ModelMismatch(f"states from model {job.encoded.model_id}; this decoder is model {self.model_id}.")
        job.encoded.rows_for(job.task, job.rows)  # raises on rows that were not encoded

    def decode_batch(self, jobs: Sequence[DecodeJob]) -> list[Decoded | Exception]:
        """One ``generate`` per (task, settings) group; a failing group fails only its own jobs."""
        results: list[Decoded | Exception] = [ValueError("not decoded")] * len(jobs)
        groups: dict[tuple[str, Settings], list[int]] = {}
        for index, job in enumerate(jobs):
            groups.setdefault((job.task, job.settings), []).append(index)
        for (task, settings), members in groups.items():
            try:
                decoded = self._generate(task, settings, [jobs[i] for i in members])
            except Exception as exc:  # noqa: BLE001 - reported to that group's callers
                decoded = [exc] * len(members)
            for index, result in zip(members, decoded):
                results[index] = result
        return results

    @torch.inference_mode()
    def _generate(self, task: str, settings: Settings, jobs: Sequence[DecodeJob]) -> list[Decoded]:
        started = time.monotonic()
        pieces = [job.encoded.rows_for(task, job.rows) for job in jobs]
        states, mask = _stack(pieces)
        generated = self.model.generate(
            encoder_outputs=torch.from_numpy(states).to(self.device, self.dtype),
            attention_mask=torch.from_numpy(mask).to(self.device), task=task, **dict(settings))
        rows = [_strip_pads(ids) for ids in generated.cpu().tolist()]
        stats = _batch_stats(jobs, started, len(rows))
        out, start = [], 0
        for job, (piece_states, _), job_stats in zip(jobs, pieces, stats):
            end = start + len(piece_states)
            out.append(Decoded(task, rows[start:end], self.model_id, job_stats,
                               job.encoded.stats, job.encoded.passes))
            start = end
        return out


def _stack(pieces: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad (states, mask) pieces of different widths into one batch (zeros are masked out)."""
    width = max(mask.shape[1] for _, mask in pieces)
    rows = sum(len(mask) for _, mask in pieces)
    d_model = pieces[0][0].shape[2]
    states = np.zeros((rows, width, d_model), dtype=np.float32)
    mask = np.zeros((rows, width), dtype=np.int64)
    start = 0
    for piece_states, piece_mask in pieces:
        end = start + len(piece_mask)
        states[start:end, :piece_mask.shape[1]] = piece_states
        mask[start:end, :piece_mask.shape[1]] = piece_mask
        start = end
    return states, mask


def _strip_pads(ids: list[int]) -> list[int]:
    end = len(ids)
    while end > 1 and ids[end - 1] == PAD_ID:
        end -= 1
    return ids[:end]
