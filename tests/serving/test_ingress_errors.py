"""The ingress's error paths without a cluster: retries after a lost replica, the generic 500, the
body limit, and the API key comparison. (Over HTTP on a live app: ``test_reliability.py``.)"""

from __future__ import annotations

import asyncio
import hmac
from typing import Any

import pytest
from fastapi import FastAPI, Request
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayTaskError
from ray.serve.exceptions import BackPressureError, RayServeException
from starlette.testclient import TestClient

from multi_task_kobart.serving import ingress
from multi_task_kobart.serving.runtime import ModelMismatch
from multi_task_kobart.serving.schemas import RequestError

REMOTE_TRACEBACK = 'Traceback (most recent call last):\n  File "/srv/secret/decoder.py", line 7'


def remote(exc: Exception) -> Exception:
    """``exc`` as the caller of a replica sees it: a RayTaskError that is also an ``exc``."""
    return RayTaskError("decode", REMOTE_TRACEBACK, exc).as_instanceof_cause()


def upstream_died() -> Exception:
    """Serve's error for a decoder call whose argument (the encoder's states) died with its replica."""
    error = RayServeException("Request to deployment 'Decoder_x' failed because an upstream actor died")
    error.__cause__ = ActorDiedError()
    return error


def attempts(*outcomes: Any, rollout_retry_s: float = 0.0) -> tuple[Any, int]:
    """Run ``call_with_retries`` over attempts that raise (an exception) or return, in turn."""
    calls = 0

    async def attempt() -> Any:
        nonlocal calls
        outcome = outcomes[min(calls, len(outcomes) - 1)]
        calls += 1
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    try:
        result = asyncio.run(ingress.call_with_retries(attempt, rollout_retry_s))
    except RequestError as exc:
        result = exc
    return result, calls


@pytest.mark.parametrize("lost", [ActorDiedError(), ActorUnavailableError("unreachable", None),
                                  remote(ActorDiedError()), upstream_died()],
                         ids=["died", "unavailable", "wrapped", "upstream"])
def test_a_lost_replica_costs_one_retry_and_a_second_loss_is_a_503(lost):
    assert attempts(lost, "answer") == ("answer", 2)
    error, calls = attempts(lost, lost, "never")
    assert calls == 2 and error.status == 503 and "retry later" in error.message


def test_overload_is_a_503_at_once_and_other_errors_are_not_retried():
    error, calls = attempts(BackPressureError(num_queued_requests=8, max_queued_requests=8), "never")
    assert (calls, error.status) == (1, 503) and "overloaded" in error.message
    with pytest.raises(ValueError):  # a replica's bug: the 500 handler answers it
        attempts(remote(ValueError("a bug")), "never")


def test_a_rollout_that_does_not_settle_is_a_503_without_the_remote_traceback():
    mismatch = remote(ModelMismatch("states from model a; this decoder is model b."))
    assert attempts(mismatch, mismatch, "answer", rollout_retry_s=5.0) == ("answer", 3)
    error, _ = attempts(mismatch, rollout_retry_s=0.0)
    assert error.status == 503 and error.message.endswith("states from model a; this decoder is model b.")
    assert "Traceback" not in error.message and "/srv/secret" not in error.message


@pytest.fixture
def client() -> TestClient:
    """A FastAPI app with the ingress's middleware and error handlers, and two routes of its own."""
    app = FastAPI()
    for cls, args, kwargs in ingress.api.user_middleware:
        app.add_middleware(cls, *args, **kwargs)
    for exc, handler in ingress.api.exception_handlers.items():
        app.add_exception_handler(exc, handler)
    app.state.max_body_bytes = 1024

    @app.get("/fail")
    async def fail() -> None:
        raise RuntimeError("tensor on /srv/secret/model.safetensors is corrupt")

    @app.post("/echo")
    async def echo(body: dict) -> dict:
        return body

    return TestClient(app, raise_server_exceptions=False)


def test_an_internal_error_is_a_generic_500_with_the_request_id(client):
    response = client.get("/fail", headers={"x-request-id": "req-42"})
    assert response.status_code == 500
    assert response.json() == {"detail": "internal error; the server log has the details under this request_id.",
                               "request_id": "req-42"}
    assert "secret" not in response.text and "Traceback" not in response.text


def test_a_body_over_the_limit_is_a_413_declared_or_not(client):
    chunks = [b'{"text": "', b"x" * 2000, b'"}']
    for response in (client.post("/echo", json={"text": "x" * 2000}),  # Content-Length: refused unread
                     client.post("/echo", content=iter(chunks), headers={"content-type": "application/json"})):
        assert response.status_code == 413
        assert response.json()["detail"] == "the request body is over 1024 bytes (max_body_bytes)."
    assert client.post("/echo", json={"text": "x" * 900}).status_code == 200


def test_the_api_key_is_compared_in_constant_time(monkeypatch):
    compared: list[tuple[bytes, bytes]] = []
    compare_digest = hmac.compare_digest

    def spy(presented: bytes, expected: bytes) -> bool:
        compared.append((presented, expected))
        return compare_digest(presented, expected)

    monkeypatch.setattr(ingress.hmac, "compare_digest", spy)
    app = FastAPI()
    app.state.api_key = "s3cret"

    def authorize(header: str) -> None:
        ingress._authorize(Request({"type": "http", "app": app, "headers": [(b"authorization", header.encode())]}))

    authorize("Bearer s3cret")
    with pytest.raises(RequestError) as refused:
        authorize("Bearer s3cres")
    assert refused.value.status == 401
    assert compared == [(b"s3cret", b"s3cret"), (b"s3cres", b"s3cret")]
