"""``build_app(args: ServeArgs) -> Application``: the typed builder of the Serve application.

Serve validates a builder's single argument against its pydantic annotation, so the YAML ``args:``
of ``serve/config.yaml`` and ``serve run multi_task_kobart.serving.app:build_app key=value`` are
checked field by field. (This module must not use ``from __future__ import annotations``: Serve
reads the annotation as a class, and a string annotation would skip the validation.)

Two topologies, same code and API:

* ``fanout`` (default, the design card's shape): Ingress -> Encoder -> Decoder_<task> x 4. Each
  decoder is its own deployment, so it scales (``autoscaling_config``) and is placed on its own.
* ``colocated``: Ingress -> Colocated (the whole model in one replica) for one small machine.

CPU shares are fractional and small by default: the fan-out set (6 replicas) asks for 0.1 + 0.2 +
4 x 0.15 = 0.9 CPU and the colocated one 0.1 + 0.8, so on a 2-CPU machine the set fits twice, which
a rollout needs (``max_surge_percent: 100``: new replicas start before old ones stop). Ray does not
enforce shares; each model replica sets its torch threads from its share (or ``torch_threads``).
"""

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from ray.serve import Application

from multi_task_kobart.serving.deployments import Colocated, Decoder, Encoder, ReplicaConfig
from multi_task_kobart.serving.ingress import Ingress, IngressConfig
from multi_task_kobart.serving.schemas import Limits
from multi_task_kobart.tasks import TASKS, validate_task

DEFAULT_MODEL = "models:/multi-task-kobart-tiny@candidate"


class ReplicaSettings(BaseModel):
    """Placement and concurrency of one deployment's replicas."""

    model_config = ConfigDict(extra="forbid")

    num_replicas: int = Field(1, ge=1, description="fixed replica count (ignored with autoscaling_config)")
    autoscaling_config: dict[str, Any] | None = Field(
        None, description="Serve autoscaling, e.g. {min_replicas: 1, max_replicas: 4, target_ongoing_requests: 8}")
    num_cpus: float = Field(0.1, ge=0, description="CPU share per replica (fractional is fine)")
    num_gpus: float = Field(0.0, ge=0, description="GPU share per replica (fractional is fine)")
    max_ongoing_requests: int = Field(64, ge=1, description="requests one replica holds at once")
    max_queued_requests: int = Field(128, ge=-1, description="callers' queue per deployment; past it: 503 "
                                                             "(-1: unbounded)")
    graceful_shutdown_timeout_s: float = Field(60.0, ge=0, description="how long a replaced replica may "
                                                                       "finish its requests before it is killed")
    max_surge_percent: int = Field(100, ge=0, le=100, description="extra replicas during a rollout: old ones "
                                   "serve until their replacements are ready (0: stop first, then start)")
    runtime_env: dict[str, Any] | None = Field(None, description="Ray runtime_env of the replicas, e.g. "
                                                                 "{env_vars: {MTK_SERVE_API_KEY: ...}}")

    def options(self) -> dict[str, Any]:
        """Keyword arguments for ``Deployment.options``."""
        scaling = ({"autoscaling_config": self.autoscaling_config} if self.autoscaling_config
                   else {"num_replicas": self.num_replicas})
        return {**scaling, "max_ongoing_requests": self.max_ongoing_requests,
                "max_queued_requests": self.max_queued_requests,
                "graceful_shutdown_timeout_s": self.graceful_shutdown_timeout_s,
                "max_surge_percent": self.max_surge_percent,
                "ray_actor_options": {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus,
                                      **({"runtime_env": self.runtime_env} if self.runtime_env else {})}}


class BatchedSettings(ReplicaSettings):
    """A model replica: placement plus ``@serve.batch`` size and wait, and torch threads."""

    num_cpus: float = 0.15
    max_ongoing_requests: int = 32
    max_batch_size: int = Field(16, ge=1, description="requests per batch (1: batching off)")
    batch_wait_timeout_s: float = Field(0.01, ge=0, description="longest wait for a batch to fill")
    torch_threads: int | None = Field(None, ge=1, description="torch threads (default: ceil(num_cpus), >= 1)")

    @model_validator(mode="after")
    def _room_for_a_batch(self) -> "BatchedSettings":
        # A replica never holds more than max_ongoing_requests, so a batch could never fill.
        if self.max_ongoing_requests <= self.max_batch_size:
            raise ValueError(f"max_ongoing_requests={self.max_ongoing_requests} must be above "
                             f"max_batch_size={self.max_batch_size}, or batches can never fill.")
        return self

    def replica_config(self, model: str, tracking_uri: str | None) -> ReplicaConfig:
        return ReplicaConfig(model=model, tracking_uri=tracking_uri, num_cpus=self.num_cpus,
                             num_gpus=self.num_gpus, torch_threads=self.torch_threads,
                             max_batch_size=self.max_batch_size, batch_wait_timeout_s=self.batch_wait_timeout_s)


class ServeArgs(BaseModel):
    """Arguments of :func:`build_app` (the YAML ``args:`` section)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(DEFAULT_MODEL, description="checkpoint directory or MLflow URI (models:/name@alias)")
    tracking_uri: str | None = Field(None, description="MLflow store (default: MLFLOW_TRACKING_URI, else "
                                                       "<project>/mlruns/mlflow.db)")
    topology: Literal["fanout", "colocated"] = "fanout"
    tasks: list[str] = Field(default_factory=lambda: list(TASKS), description="tasks that get a decoder")
    ingress: ReplicaSettings = Field(default_factory=ReplicaSettings)
    encoder: BatchedSettings = Field(default_factory=lambda: BatchedSettings(num_cpus=0.2))
    decoder: BatchedSettings = Field(default_factory=BatchedSettings, description="each decoder deployment")
    decoder_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per task: decoder fields that differ, e.g. {qa_generation: {num_cpus: 1}}")
    colocated: BatchedSettings = Field(default_factory=lambda: BatchedSettings(
        num_cpus=0.8, max_ongoing_requests=64), description="the one model deployment of 'colocated'")
    limits: Limits = Field(default_factory=Limits)
    api_key_env: str | None = Field("MTK_SERVE_API_KEY", description="environment variable holding the API "
                                                                      "key; unset or empty: no key needed")
    log_text: bool = Field(False, description="write request texts into the Serve logs")
    rollout_retry_s: float = Field(30.0, ge=0, description="how long a request retries while encoder and "
                                                           "decoders run different model versions")

    @field_validator("tasks")
    @classmethod
    def _known_tasks(cls, value: list[str]) -> list[str]:
        if not value or len(set(value)) != len(value):
            raise ValueError(f"tasks must be distinct and non-empty, got {value}.")
        return [validate_task(task) for task in value]

    @model_validator(mode="after")
    def _consistent(self) -> "ServeArgs":
        unknown = set(self.decoder_overrides) - set(self.tasks)
        if unknown:
            raise ValueError(f"decoder_overrides names {sorted(unknown)}, which are not in tasks {self.tasks}.")
        self.decoder_settings()  # validate the merged per-task settings now, not at deploy time
        if self.ingress.graceful_shutdown_timeout_s < self.rollout_retry_s:
            raise ValueError(f"ingress.graceful_shutdown_timeout_s={self.ingress.graceful_shutdown_timeout_s} is "
                             f"below rollout_retry_s={self.rollout_retry_s}: a replaced ingress would be killed "
                             "while its requests still wait for the new model.")
        first_hop = self.encoder if self.topology == "fanout" else self.colocated
        if self.ingress.max_ongoing_requests < first_hop.max_batch_size:
            raise ValueError(f"ingress.max_ongoing_requests={self.ingress.max_ongoing_requests} is below the "
                             f"encoder's max_batch_size={first_hop.max_batch_size}: its batches could never fill.")
        return self

    def decoder_settings(self) -> dict[str, BatchedSettings]:
        base = self.decoder.model_dump()
        return {task: BatchedSettings(**{**base, **self.decoder_overrides.get(task, {})}) for task in self.tasks}

    def ingress_config(self) -> IngressConfig:
        return IngressConfig(model=self.model, tracking_uri=self.tracking_uri, topology=self.topology,
                             limits=self.limits, api_key_env=self.api_key_env, log_text=self.log_text,
                             rollout_retry_s=self.rollout_retry_s)


def build_app(args: ServeArgs) -> Application:
    """The Serve application for ``args`` (``serve.run(build_app(ServeArgs(...)))`` in Python)."""
    if args.topology == "fanout":
        encoder = Encoder.options(**args.encoder.options()).bind(
            args.encoder.replica_config(args.model, args.tracking_uri))
        decoders = {task: Decoder.options(name=f"Decoder_{task}", **settings.options()).bind(
                        settings.replica_config(args.model, args.tracking_uri), [task])
                    for task, settings in args.decoder_settings().items()}
    else:
        model = Colocated.options(**args.colocated.options()).bind(
            args.colocated.replica_config(args.model, args.tracking_uri), list(args.tasks))
        encoder, decoders = model, {task: model for task in args.tasks}
    return Ingress.options(**args.ingress.options()).bind(encoder, decoders, args.ingress_config())
