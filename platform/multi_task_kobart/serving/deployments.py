"""Serve deployments that hold model weights: ``Encoder``, ``Decoder`` (one per task) and ``Colocated``.

Fan-out: one ``Encoder`` (embedding, encoder, router, adapters) and four ``Decoder`` deployments
named ``Decoder_<task>`` (embedding + that task's decoder). Colocated: one ``Colocated`` deployment
holds the whole model and answers both ``encode`` and ``decode``. Both expose the same methods, so
the ingress (``ingress.py``) runs the same code against either shape.

Batching: ``encode`` and ``decode`` check a request on its own (a bad one fails alone) and then
join a ``@serve.batch`` queue. Serve forms a batch as soon as its wait ends, even while the previous
batch still computes, so under load it would run many small batches one after another; each batch
therefore goes through a :class:`ComputeLane`, which hands the compute thread everything that
arrived while it was busy (up to ``max_batch_size`` requests) as one batch. One compute thread per
replica: the event loop keeps accepting requests while torch works, and the model is never used by
two threads at once (adapter selection and eval switches are per-model state). Replicas set their
torch thread count from their CPU share (``runtime.set_torch_threads``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from ray import serve
from ray.serve import metrics

from multi_task_kobart import tracking
from multi_task_kobart.serving.runtime import (
    ENCODER_PARTS,
    DecodeJob,
    Decoded,
    DecoderCore,
    Encoded,
    EncodeJob,
    EncoderCore,
    Settings,
    decoder_parts,
    load_model,
    loaded_bytes,
    model_fingerprint,
    set_torch_threads,
)
from multi_task_kobart.tokenizer import load_tokenizer, tokenizer_fingerprint

logger = logging.getLogger("ray.serve")
#: Serve batches allowed in flight at once: all of them reach the ComputeLane, which merges them.
MAX_SERVE_BATCHES = 64
#: Colocated replica: the longest a decode batch waits for encodes in flight, and how long an
#: encoded request may take to come back as a decode call before it no longer counts (its caller
#: may have gone).
DECODE_MAX_HOLD_S = 0.5
ENCODE_TRANSIT_MAX_S = 0.5


@dataclass(frozen=True)
class ReplicaConfig:
    """What a model replica is built from (the builder fills it from ``ServeArgs``)."""

    model: str
    tracking_uri: str | None = None
    num_cpus: float = 1.0
    num_gpus: float = 0.0
    torch_threads: int | None = None
    max_batch_size: int = 16
    batch_wait_timeout_s: float = 0.01


def describe_model(model: str, directory: Path, tracking_uri: str | None) -> dict[str, Any]:
    """uri, registered name + version (when the URI names one) and the weights' id."""
    registered = tracking.registered_version(model, tracking_uri=tracking_uri)
    name, version = registered if registered else (directory.name, None)
    return {"uri": model, "name": name, "version": version, "id": model_fingerprint(directory)}


def tokenizer_id(directory: Path) -> str:
    """Fingerprint of the checkpoint's tokenizer: the ingress and the encoder must agree on it."""
    return tokenizer_fingerprint(load_tokenizer(directory))[:16]


class ModelReplica:
    """The parts every model replica has: its checkpoint, identity, one compute thread, counters."""

    def __init__(self, config: ReplicaConfig, parts: Sequence[str] | None) -> None:
        self.threads = set_torch_threads(config.num_cpus, config.torch_threads)
        self.directory = tracking.resolve_model_dir(config.model, tracking_uri=config.tracking_uri)
        self.info = describe_model(config.model, self.directory, config.tracking_uri)
        device = "cuda" if config.num_gpus > 0 and torch.cuda.is_available() else "cpu"
        self.model = load_model(self.directory, parts, device=device)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mtk-compute")
        self.counts: Counter[str] = Counter()
        # Created here, not at import: Serve tags a metric with the replica it is created in.
        self.metrics = {"rows": metrics.Counter("mtk_rows", description="Rows encoded or decoded.",
                                                tag_keys=("stage", "task")),
                        "passes": metrics.Counter("mtk_encoder_passes",
                                                  description="Encoder forward passes, summed over requests.")}
        logger.info("loaded %s (%s) parts=%s on %s, %.1f MB of weights, %d torch threads",
                    self.info["uri"], self.info["id"], list(parts or ["all"]), device,
                    loaded_bytes(self.model) / 1e6, self.threads)

    async def compute(self, function: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def lane(self, function: Callable[[list[Any]], list[Any]], config: ReplicaConfig) -> "ComputeLane":
        return ComputeLane(function, self.executor, config.max_batch_size)

    def stats(self) -> dict[str, Any]:
        """Counters, threads and memory of this replica process (Linux: RSS and PSS from /proc)."""
        return {"pid": os.getpid(), "counts": dict(self.counts), "torch_threads": torch.get_num_threads(),
                "weights_bytes": loaded_bytes(self.model), "model": self.info, **process_memory()}


def process_memory(pid: int | None = None) -> dict[str, int]:
    """RSS and PSS (shared pages divided among the processes that map them) of a process, in bytes."""
    rollup = Path(f"/proc/{pid or os.getpid()}/smaps_rollup")
    values: dict[str, int] = {}
    if rollup.is_file():
        for line in rollup.read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("Rss", "Pss"):
                values[f"{key.lower()}_bytes"] = int(rest.split()[0]) * 1024
    if not values:
        values["rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return values


class ComputeLane:
    """Runs ``function`` over lists of jobs on the replica's compute thread, merging what waits.

    ``hold`` (optional): while it returns True, a batch about to start waits (at most
    ``max_hold_s``) for work that is on its way; the colocated replica holds its decodes while
    encodes are queued, running, or just done, so one decode batch takes every request of a
    wave instead of starting with the first few and leaving the rest for a second full pass.
    """

    def __init__(self, function: Callable[[list[Any]], list[Any]], executor: ThreadPoolExecutor,
                 max_jobs: int, hold: Callable[[], bool] | None = None, max_hold_s: float = 0.0) -> None:
        self.function, self.executor, self.max_jobs = function, executor, max_jobs
        self.hold, self.max_hold_s = hold, max_hold_s
        self.pending: list[tuple[list[Any], asyncio.Future]] = []
        self.worker: asyncio.Task | None = None
        self.running = False

    def busy(self) -> bool:
        """Work waiting or computing."""
        return bool(self.pending) or self.running

    async def submit(self, jobs: list[Any]) -> list[Any]:
        """Results for ``jobs``, in order, computed together with whatever else is waiting."""
        future = asyncio.get_running_loop().create_future()
        self.pending.append((list(jobs), future))
        if self.worker is None or self.worker.done():
            self.worker = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            await self._wait_for_feeders()
            taken = self._take()
            jobs = [job for group, _ in taken for job in group]
            self.running = True
            try:
                results = await loop.run_in_executor(self.executor, self.function, jobs)
            except Exception as exc:  # noqa: BLE001 - every caller of this run gets it
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            finally:
                self.running = False
            start = 0
            for group, future in taken:
                if not future.done():
                    future.set_result(results[start:start + len(group)])
                start += len(group)

    async def _wait_for_feeders(self) -> None:
        if self.hold is None:
            return
        deadline = time.monotonic() + self.max_hold_s
        while self.hold() and time.monotonic() < deadline:
            await asyncio.sleep(0.002)

    def _take(self) -> list[tuple[list[Any], asyncio.Future]]:
        """Whole waiting batches, oldest first, up to ``max_jobs`` jobs (always at least one batch)."""
        taken, count = [], 0
        while self.pending and (not taken or count + len(self.pending[0][0]) <= self.max_jobs):
            group, future = self.pending.pop(0)
            taken.append((group, future))
            count += len(group)
        return taken


def configure_batching(replica_object: Any, config: ReplicaConfig) -> None:
    """Apply the configured batch size and wait to every ``@serve.batch`` method of a replica."""
    for name in ("_encode_batch", "_decode_batch"):
        handler = getattr(replica_object, name, None)
        if handler is not None:
            handler.set_max_batch_size(config.max_batch_size)
            handler.set_batch_wait_timeout_s(config.batch_wait_timeout_s)


async def _encode(self: Any, job: EncodeJob) -> Encoded:
    """Check one request's rows, then encode them in a batch with other requests'."""
    self.encoder_core.check(job)
    job.enqueued_at = time.monotonic()
    encoded = await self._encode_batch(job)
    self.replica.counts.update(requests=1, rows=len(job.token_ids), passes=encoded.passes)
    self.replica.metrics["rows"].inc(len(job.token_ids), tags={"stage": "encode", "task": ""})
    self.replica.metrics["passes"].inc(encoded.passes)
    return encoded


async def _decode(self: Any, encoded: Encoded, task: str, rows: list[int] | None, settings: Settings) -> Decoded:
    """Check one decode request, then generate in a batch with other requests for the same task."""
    job = DecodeJob(encoded, task, rows, settings, time.monotonic())
    self.decoder_core.check(job)
    result = await self._decode_batch(job)
    if isinstance(result, Exception):
        raise result
    result.model = self.replica.info
    self.replica.counts.update(decode_requests=1, decode_rows=len(result.token_ids))
    self.replica.metrics["rows"].inc(len(result.token_ids), tags={"stage": "decode", "task": task})
    return result


async def _ready(self: Any) -> dict[str, Any]:
    return {"model": self.replica.info}


async def _stats(self: Any) -> dict[str, Any]:
    return {**self.replica.stats(), "compute_thread_torch_threads": await self.replica.compute(torch.get_num_threads)}


@serve.deployment(name="Encoder")
class Encoder:
    """Shared encoder + router (+ per-task adapters), batched across requests."""

    def __init__(self, config: ReplicaConfig) -> None:
        self.replica = ModelReplica(config, ENCODER_PARTS)
        model, model_id = self.replica.model, self.replica.info["id"]
        self.encoder_core = EncoderCore(model, model_id, tokenizer_id(self.replica.directory))
        self.encode_lane = self.replica.lane(self.encoder_core.encode_batch, config)
        self.encoder_core.warm_up()
        configure_batching(self, config)

    encode, ready, stats = _encode, _ready, _stats

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, max_concurrent_batches=MAX_SERVE_BATCHES)
    async def _encode_batch(self, jobs: list[EncodeJob]) -> list[Encoded]:
        self.replica.counts.update(batches=1)
        return await self.encode_lane.submit(jobs)


@serve.deployment(name="Decoder")
class Decoder:
    """The decoder(s) of ``tasks`` (one task per deployment in the fan-out), batched ``generate``."""

    def __init__(self, config: ReplicaConfig, tasks: Sequence[str]) -> None:
        self.replica = ModelReplica(config, decoder_parts(tasks))
        self.decoder_core = DecoderCore(self.replica.model, self.replica.info["id"], tasks)
        self.decode_lane = self.replica.lane(self.decoder_core.decode_batch, config)
        self.decoder_core.warm_up()
        configure_batching(self, config)

    decode, ready, stats = _decode, _ready, _stats

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, max_concurrent_batches=MAX_SERVE_BATCHES)
    async def _decode_batch(self, jobs: list[DecodeJob]) -> list[Decoded | Exception]:
        self.replica.counts.update(decode_batches=1)
        return await self.decode_lane.submit(jobs)


@serve.deployment(name="Colocated")
class Colocated:
    """The whole model in one replica: ``encode`` and ``decode`` as in the fan-out, one compute thread."""

    def __init__(self, config: ReplicaConfig, tasks: Sequence[str]) -> None:
        self.replica = ModelReplica(config, ENCODER_PARTS + decoder_parts(tasks))
        model, model_id = self.replica.model, self.replica.info["id"]
        self.encoder_core = EncoderCore(model, model_id, tokenizer_id(self.replica.directory))
        self.decoder_core = DecoderCore(model, model_id, tasks)
        self.encode_lane = self.replica.lane(self.encoder_core.encode_batch, config)
        # One compute thread for both stages: a decode batch waits while encodes are queued or
        # running, or encoded requests are on their way back as decode calls (a wave of requests
        # then decodes as one batch rather than the first few alone, the rest a full pass later).
        self.in_transit: deque[float] = deque()  # when each encoded request left, oldest first
        self.decode_lane = ComputeLane(self.decoder_core.decode_batch, self.replica.executor,
                                       config.max_batch_size, max_hold_s=DECODE_MAX_HOLD_S,
                                       hold=lambda: self.encode_lane.busy() or self._awaiting_decode())
        self.encoder_core.warm_up()
        self.decoder_core.warm_up()
        configure_batching(self, config)

    ready, stats = _ready, _stats

    async def encode(self, job: EncodeJob) -> Encoded:
        encoded = await _encode(self, job)
        self.in_transit.append(time.monotonic())
        return encoded

    async def decode(self, encoded: Encoded, task: str, rows: list[int] | None, settings: Settings) -> Decoded:
        # Each decode call clears the oldest entry; a multi-task request's further calls clear
        # others' early. The hold only shapes batches, so a miscount costs speed, never answers.
        if self.in_transit:
            self.in_transit.popleft()
        return await _decode(self, encoded, task, rows, settings)

    def _awaiting_decode(self) -> bool:
        cutoff = time.monotonic() - ENCODE_TRANSIT_MAX_S
        while self.in_transit and self.in_transit[0] < cutoff:
            self.in_transit.popleft()
        return bool(self.in_transit)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, max_concurrent_batches=MAX_SERVE_BATCHES)
    async def _encode_batch(self, jobs: list[EncodeJob]) -> list[Encoded]:
        self.replica.counts.update(batches=1)
        return await self.encode_lane.submit(jobs)

    @serve.batch(max_batch_size=16, batch_wait_timeout_s=0.01, max_concurrent_batches=MAX_SERVE_BATCHES)
    async def _decode_batch(self, jobs: list[DecodeJob]) -> list[Decoded | Exception]:
        self.replica.counts.update(decode_batches=1)
        return await self.decode_lane.submit(jobs)
