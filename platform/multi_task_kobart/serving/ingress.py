"""The HTTP ingress: FastAPI through ``serve.ingress``; tokenization and validation happen here.

Per request the ingress tokenizes the texts (the checkpoint's tokenizer, ``encode_sources``),
makes **one** encoder call and hands that call's response straight to every decoder the request
needs (Serve resolves it once, before the decoders run; the states go from the encoder to the
decoders through Ray's object store, not through the ingress). ``task="auto"`` awaits the encoder
first, since the router's choice decides which decoders to call.

Routes: ``GET /`` playground, ``GET /healthz``, ``GET /v1/tasks``, ``POST /v1/generate``,
``POST /v1/pipeline``; OpenAPI at ``/docs``. Errors are ``{"detail": "...", "request_id": "..."}``
with 400 (malformed JSON), 401 (API key), 413 (a body over ``max_body_bytes``), 422 (a field:
unknown task, empty/long text, out-of-range argument) or 503 (overloaded, a model replica lost
twice, or a rollout that did not settle within ``rollout_retry_s``). Anything else is a 500 whose
body says only "internal error" and the request id: the traceback goes to the replica's log, never
to the client. User text is not logged unless ``log_text`` is set.

A model replica that dies while it holds a request costs that request a retry, not an error. Serve's
router itself re-sends what the dead replica had not yet acknowledged; a request it was computing
fails with ``RayActorError``, and :func:`call_with_retries` runs it once more. Serve has by then
taken the dead replica out of routing, so the retry goes to a live replica, or waits for the
replacement Serve starts. Encoding and decoding are pure functions of the request, so running them
twice is safe.
"""

# No ``from __future__ import annotations`` here: ``@serve.deployment`` replaces the class's module
# name, so Ray pickles the class by value, and FastAPI could not resolve string annotations
# (``Request``, the body models) against the few globals such a copy carries.
import asyncio
import hmac
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from ray import serve
from ray.exceptions import RayActorError, RayTaskError
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from multi_task_kobart import tracking
from multi_task_kobart.generation import DEFAULT_GENERATION
from multi_task_kobart.model_config import MultiTaskKoBARTConfig
from multi_task_kobart.serving.deployments import describe_model, tokenizer_id
from multi_task_kobart.serving.runtime import Decoded, EncodeJob, ModelMismatch
from multi_task_kobart.serving.schemas import (
    ErrorResponse,
    GenerateRequest,
    GenerateResponse,
    Limits,
    PipelineRequest,
    PipelineResponse,
    RequestError,
    check_generate,
    check_pipeline,
)
from multi_task_kobart.tasks import AUTO, EXAMPLE_INPUTS
from multi_task_kobart.tokenizer import encode_sources, load_tokenizer

logger = logging.getLogger("ray.serve")
PLAYGROUND = Path(__file__).resolve().parent / "playground.html"
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 413, 422, 500, 503)}


@dataclass(frozen=True)
class IngressConfig:
    model: str
    tracking_uri: str | None = None
    topology: str = "fanout"
    limits: Limits = field(default_factory=Limits)
    api_key_env: str | None = "MTK_SERVE_API_KEY"
    log_text: bool = False
    rollout_retry_s: float = 30.0
    health_timeout_s: float = 5.0


api = FastAPI(title="Multi-Task KoBART", version="1",
              description="One shared KoBART encoder, four task decoders, on Ray Serve.")


def _request_id(request: Request) -> str:
    """Serve's proxy gives every request an ``x-request-id`` (the client's, or a new one) and
    returns it as the ``X-Request-ID`` response header; the id outside Serve is a fresh one."""
    return request.headers.get("x-request-id") or uuid.uuid4().hex[:12]


def _detail(request: Request, status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message, "request_id": _request_id(request)}, status_code=status,
                        headers=headers)


@api.exception_handler(RequestError)
async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    headers = {401: {"WWW-Authenticate": "Bearer"}, 503: {"Retry-After": "1"}}.get(exc.status)
    return _detail(request, exc.status, exc.message, headers)


@api.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    """One line per problem, ``field: what is wrong``; a body that is not JSON is a 400."""
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return _detail(request, 400, "the body is not valid JSON: " + "; ".join(
            str(error.get("ctx", {}).get("error", error["msg"])) for error in errors))
    lines = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return _detail(request, 422, "; ".join(lines))


@api.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException) -> JSONResponse:
    """Starlette's own refusals (404, 405) and the body limit's 413, in the same shape as ours."""
    return _detail(request, exc.status_code, str(exc.detail), exc.headers)


@api.exception_handler(Exception)
async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    """A bug, not a bad request: a generic body (no exception text, which can quote internals);
    Starlette re-raises after sending it, so Serve logs the traceback with the request id."""
    return _detail(request, 500, "internal error; the server log has the details under this request_id.")


class BodyLimit:
    """413 for a request body over ``max_body_bytes`` before FastAPI holds all of it in memory: at
    once when ``Content-Length`` says so, else as soon as the chunks received pass the limit.

    (FastAPI's own ``max_body_size`` answers a declared oversize body with a plain-text 413 that
    names no limit; the limit comes from ``app.state``, which the ingress sets from its config.)
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        limit = getattr(scope["app"].state, "max_body_bytes", None) if scope["type"] == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        too_large = HTTPException(413, f"the request body is over {limit} bytes (max_body_bytes).")
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            response = await _http_error(Request(scope), too_large)
            await response(scope, receive, send)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise too_large  # FastAPI re-raises an HTTPException from reading the body: _http_error
            return message

        await self.app(scope, counted, send)


api.add_middleware(BodyLimit)


def _authorize(request: Request) -> None:
    """Bearer API key, compared in constant time; a dependency, so it runs before body validation."""
    expected: str | None = getattr(request.app.state, "api_key", None)
    if not expected:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise RequestError(401, "missing or wrong API key: send 'Authorization: Bearer <key>'.")


async def _awaited(response: Any) -> Any:
    """Await a DeploymentResponse inside a coroutine (asyncio.gather/wait_for want coroutines)."""
    return await response


def _replica_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says a model replica died or became unreachable while it held the request.

    Ray raises ``RayActorError`` (``ActorDiedError``, ``ActorUnavailableError``) for the replica a
    call went to; when the replica that died computed an argument (the encoder's states, for a
    decoder call), Serve raises its own error with the ``ActorDiedError`` as ``__cause__``, and a
    replica that re-raises it wraps it in a ``RayTaskError`` (``.cause``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, RayActorError):
            return True
        seen.add(id(current))
        current = (current.cause if isinstance(current, RayTaskError) and isinstance(current.cause, BaseException)
                   else current.__cause__)
    return False


async def call_with_retries(attempt: Callable[[], Awaitable[Any]], rollout_retry_s: float) -> Any:
    """``attempt()``, retried while a rollout settles and once after a lost replica; 503 when it cannot.

    * ``ModelMismatch`` (encoder and decoders on different weights, a rollout in progress): retried
      every 0.1 s for ``rollout_retry_s``.
    * a replica lost mid-request (:func:`_replica_lost`): retried once. A second loss means the
      deployment is failing, not one unlucky replica; a bounded retry never multiplies load.
    * ``BackPressureError`` (an inner deployment's queue is full): 503 at once, as JSON (Serve's own
      handler for it would answer in plain text).
    """
    deadline = time.monotonic() + rollout_retry_s
    retried = False
    while True:
        try:
            return await attempt()
        except ModelMismatch as exc:
            if time.monotonic() > deadline:
                # str() of a RayTaskError carries the remote traceback; its cause is the plain error
                cause = exc.cause if isinstance(exc, RayTaskError) else exc
                raise RequestError(503, f"the model is being replaced and did not settle: {cause}") from exc
            await asyncio.sleep(0.1)
        except BackPressureError as exc:
            raise RequestError(503, "overloaded: a model deployment's queue is full; retry later.") from exc
        except Exception as exc:
            if not _replica_lost(exc):
                raise
            if retried:
                raise RequestError(503, "model replicas stopped while they held this request; "
                                        "retry later.") from exc
            retried = True
            logger.warning("a model replica was lost mid-request (%s); retrying once", type(exc).__name__)


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    """HTTP in front of the encoder and decoder deployments (either topology)."""

    def __init__(self, encoder: DeploymentHandle, decoders: dict[str, DeploymentHandle],
                 config: IngressConfig) -> None:
        self.encoder, self.decoders, self.config = encoder, decoders, config
        directory = tracking.resolve_model_dir(config.model, tracking_uri=config.tracking_uri)
        self.tokenizer, self.tokenizer_id = load_tokenizer(directory), tokenizer_id(directory)
        self.model_config = MultiTaskKoBARTConfig.load(directory)
        self.info = describe_model(config.model, directory, config.tracking_uri)
        self.max_tokens = min(config.limits.max_input_tokens, self.model_config.max_position_embeddings - 2)
        api.state.api_key = os.environ.get(config.api_key_env) if config.api_key_env else None
        api.state.max_body_bytes = config.limits.max_body_bytes
        self.playground = PLAYGROUND.read_text(encoding="utf-8")

    # ------------------------------------------------------------------ routes
    @api.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground_page(self) -> HTMLResponse:
        return HTMLResponse(self.playground)

    @api.get("/healthz", responses={503: {"description": "a deployment is not ready"}})
    async def healthz(self) -> JSONResponse:
        """200 when every deployment answers within ``health_timeout_s``, else 503 naming the others."""
        handles = {handle.deployment_name: handle for handle in [self.encoder, *self.decoders.values()]}
        calls = {name: asyncio.wait_for(_awaited(handle.ready.remote()), self.config.health_timeout_s)
                 for name, handle in handles.items()}
        results = await asyncio.gather(*calls.values(), return_exceptions=True)
        states = {name: "ok" if not isinstance(result, BaseException) else f"not ready: {type(result).__name__}"
                  for name, result in zip(calls, results)}
        healthy = all(state == "ok" for state in states.values())
        return JSONResponse({"status": "ok" if healthy else "unavailable", "deployments": states},
                            status_code=200 if healthy else 503)

    @api.get("/v1/tasks", dependencies=[Depends(_authorize)])
    async def tasks(self) -> dict[str, Any]:
        """The tasks this model serves, whether ``auto`` works, the decoding defaults and the limits."""
        cfg = self.model_config
        return {"tasks": [{"name": task, "examples": list(EXAMPLE_INPUTS.get(task, ())),
                           "deployment": handle.deployment_name} for task, handle in self.decoders.items()],
                "auto": cfg.router, "per_task_encoding": cfg.adapter_rank > 0,
                "topology": self.config.topology, "model": self.info,
                "generation_defaults": DEFAULT_GENERATION.kwargs(),
                "limits": {**self.config.limits.model_dump(), "max_input_tokens": self.max_tokens}}

    @api.post("/v1/generate", response_model=GenerateResponse, response_model_exclude_none=True, responses=_ERRORS,
              dependencies=[Depends(_authorize)])
    async def generate(self, body: GenerateRequest, request: Request) -> dict[str, Any]:
        """Outputs in input order; ``task: "auto"`` says which task the router chose for each text."""
        return await self._logged(request, "generate", body.inputs(), lambda: self._answer(body))

    @api.post("/v1/pipeline", response_model=PipelineResponse, response_model_exclude_none=True, responses=_ERRORS,
              dependencies=[Depends(_authorize)])
    async def pipeline(self, body: PipelineRequest, request: Request) -> dict[str, Any]:
        """Run ``steps`` in order on ``text``: each step's output is the next step's input."""
        return await self._logged(request, "pipeline", [body.text], lambda: self._pipeline(body))

    # ------------------------------------------------------------------ request flow
    async def _logged(self, request: Request, route: str, texts: list[str],
                      work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
        """Run ``work`` and log one line (sizes and timing; the texts only with ``log_text``)."""
        request_id = _request_id(request)
        started, status = time.monotonic(), 200
        try:
            return await work()
        except RequestError as exc:
            status = exc.status
            raise
        except BaseException:
            status = 500
            raise
        finally:
            shown = f" texts={texts!r}" if self.config.log_text else ""
            logger.info("%s request_id=%s texts=%d chars=%d status=%d ms=%.1f%s", route, request_id, len(texts),
                        sum(map(len, texts)), status, (time.monotonic() - started) * 1e3, shown)

    async def _answer(self, body: GenerateRequest) -> dict[str, Any]:
        started = time.monotonic()
        check_generate(body, self.config.limits)
        ids = self._tokenize(body.inputs(), strict=True)
        tokenized = time.monotonic()
        settings = tuple(sorted(body.generate_kwargs(self.config.limits).items()))
        decoded = await call_with_retries(lambda: self._run(ids, body.task_list(), settings),
                                          self.config.rollout_retry_s)
        response = self._response(decoded, body.task if body.task is not None else body.tasks,
                                  token_ids=body.return_token_ids)
        response["timings_ms"].update(tokenize=(tokenized - started) * 1e3, total=(time.monotonic() - started) * 1e3)
        return response

    def _tokenize(self, texts: list[str], *, strict: bool) -> list[list[int]]:
        """Token ids per text; over-long texts are refused (``strict``) or cut (pipeline steps)."""
        ids, truncated = encode_sources(self.tokenizer, texts, max_length=self.max_tokens + 2)
        if strict and any(truncated):
            index = truncated.index(True)
            name = "text" if len(texts) == 1 else f"texts[{index}]"
            raise RequestError(422, f"{name} is longer than {self.max_tokens} tokens (max_input_tokens).")
        return ids

    async def _run(self, ids: list[list[int]], tasks: list[str], settings: Any) -> list[tuple[list[int], Decoded]]:
        """One encoder call; decoders in parallel. Returns (rows, Decoded) per decoder call."""
        self._check_served(tasks)
        if tasks == [AUTO]:
            encoded_response = self.encoder.encode.remote(EncodeJob(ids, (), True, self.tokenizer_id))
            groups: dict[str, list[int]] = {}
            for row, task in enumerate((await encoded_response).routed):
                groups.setdefault(task, []).append(row)
            self._check_served(list(groups), routed=True)
        else:
            encoded_response = self.encoder.encode.remote(EncodeJob(ids, tuple(tasks), False, self.tokenizer_id))
            groups = {task: list(range(len(ids))) for task in tasks}
        calls = [self.decoders[task].decode.remote(encoded_response, task, rows if tasks == [AUTO] else None,
                                                   settings) for task, rows in groups.items()]
        results = await asyncio.gather(*(_awaited(call) for call in calls))
        return list(zip(groups.values(), results))

    def _check_served(self, tasks: list[str], *, routed: bool = False) -> None:
        if tasks == [AUTO]:
            if not self.model_config.router:
                raise RequestError(422, "task: this model has no router, so 'auto' is unavailable; name a task.")
            return
        missing = [task for task in tasks if task not in self.decoders]
        if missing:
            what = "the router chose" if routed else "task"
            raise RequestError(422, f"{what} {missing[0]!r}, which this deployment does not serve; "
                                    f"served: {', '.join(self.decoders)}.")

    def _response(self, decoded: list[tuple[list[int], Decoded]], asked: str | list[str], *,
                  token_ids: bool = False) -> dict[str, Any]:
        task_order = {task: i for i, task in enumerate(asked if isinstance(asked, list) else [asked])}
        outputs = [{"input_index": row, "task": result.task, "token_ids": ids if token_ids else None,
                    "text": self.tokenizer.decode(ids, skip_special_tokens=True)}
                   for rows, result in decoded for row, ids in zip(rows, result.token_ids)]
        outputs.sort(key=lambda out: (out["input_index"], task_order.get(out["task"], 0)))
        first = decoded[0][1]
        per_task = {result.task: {"queue": result.stats["queue_ms"], "decode": result.stats["compute_ms"],
                                  "batch_requests": result.stats["batch_requests"],
                                  "batch_rows": result.stats["batch_rows"]} for _, result in decoded}
        timings = {"encode_queue": first.encoder_stats["queue_ms"], "encode": first.encoder_stats["compute_ms"],
                   "encode_batch_requests": first.encoder_stats["batch_requests"],
                   "decode_queue": max(t["queue"] for t in per_task.values()),
                   "decode": max(t["decode"] for t in per_task.values()), "per_task": per_task}
        return {"outputs": outputs, "task": asked, "routed": asked == AUTO,
                "model": {**self.info, **first.model}, "timings_ms": timings,
                "encoder": {"calls": 1, "passes": first.encoder_passes,
                            "per_task_encoding": self.model_config.adapter_rank > 0}}

    async def _pipeline(self, body: PipelineRequest) -> dict[str, Any]:
        check_pipeline(body, self.config.limits)
        started, text, steps = time.monotonic(), body.text, []
        settings = tuple(sorted(body.generate_kwargs(self.config.limits).items()))
        for index, step in enumerate(body.steps):
            ids = self._tokenize([text], strict=index == 0)
            decoded = await call_with_retries(lambda ids=ids, step=step: self._run(ids, [step], settings),
                                              self.config.rollout_retry_s)
            result = self._response(decoded, step)
            output = result["outputs"][0]
            steps.append({"task": step, "used": output["task"], "input": text, "output": output["text"],
                          "timings_ms": result["timings_ms"]})
            text = output["text"]
        return {"output": text, "steps": steps, "model": result["model"],
                "timings_ms": {"total": (time.monotonic() - started) * 1e3}}

