"""The HTTP ingress: FastAPI through ``serve.ingress``; tokenization and validation happen here.

Per request the ingress tokenizes the texts (the checkpoint's tokenizer, ``encode_sources``),
makes **one** encoder call and hands that call's response straight to every decoder the request
needs (Serve resolves it once, before the decoders run; the states go from the encoder to the
decoders through Ray's object store, not through the ingress). ``task="auto"`` awaits the encoder
first, since the router's choice decides which decoders to call.

Routes: ``GET /`` playground, ``GET /healthz``, ``GET /v1/tasks``, ``POST /v1/generate``,
``POST /v1/pipeline``; OpenAPI at ``/docs``. Errors are ``{"detail": "..."}`` with 400 (malformed
JSON), 401 (API key), 422 (a field: unknown task, empty/long text, out-of-range argument) or 503
(overloaded, or a rollout that did not settle within ``rollout_retry_s``). User text is not logged
unless ``log_text`` is set.
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
from ray.serve.exceptions import BackPressureError
from ray.serve.handle import DeploymentHandle

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
_ERRORS = {status: {"model": ErrorResponse} for status in (400, 401, 422, 503)}


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


def _detail(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


@api.exception_handler(RequestError)
async def _request_error(_: Request, exc: RequestError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    return _detail(exc.status, exc.message, headers)


@api.exception_handler(RequestValidationError)
async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    """One line per problem, ``field: what is wrong``; a body that is not JSON is a 400."""
    errors = exc.errors()
    if any(error.get("type") == "json_invalid" for error in errors):
        return _detail(400, "the body is not valid JSON: " + "; ".join(
            str(error.get("ctx", {}).get("error", error["msg"])) for error in errors))
    lines = []
    for error in errors:
        where = ".".join(str(part) for part in error["loc"] if part != "body") or "body"
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return _detail(422, "; ".join(lines))


@api.exception_handler(BackPressureError)
async def _overloaded(_: Request, exc: BackPressureError) -> JSONResponse:
    return _detail(503, f"overloaded, retry later ({exc.message})", {"Retry-After": "1"})


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
        request_id = request.headers.get("x-request-id") or uuid.uuid4().hex[:12]
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
        settings = tuple(sorted(body.generate_kwargs().items()))
        decoded = await self._with_rollout_retry(lambda: self._run(ids, body.task_list(), settings))
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

    async def _with_rollout_retry(self, attempt: Callable[[], Awaitable[Any]]) -> Any:
        """Retry while encoder and decoders run different weights (a rollout in progress)."""
        deadline = time.monotonic() + self.config.rollout_retry_s
        while True:
            try:
                return await attempt()
            except ModelMismatch as exc:
                if time.monotonic() > deadline:
                    raise RequestError(503, f"the model is being replaced and did not settle: {exc}") from exc
                await asyncio.sleep(0.1)

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
        settings = tuple(sorted(body.generate_kwargs().items()))
        for index, step in enumerate(body.steps):
            ids = self._tokenize([text], strict=index == 0)
            decoded = await self._with_rollout_retry(lambda ids=ids, step=step: self._run(ids, [step], settings))
            result = self._response(decoded, step)
            output = result["outputs"][0]
            steps.append({"task": step, "used": output["task"], "input": text, "output": output["text"],
                          "timings_ms": result["timings_ms"]})
            text = output["text"]
        return {"output": text, "steps": steps, "model": result["model"],
                "timings_ms": {"total": (time.monotonic() - started) * 1e3}}

