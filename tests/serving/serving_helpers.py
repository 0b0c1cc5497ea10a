"""Helpers of the Serve tests: in-process references (the same checkpoint, tokenizer and padding, no
Ray), HTTP calls, deploying an application, and the processes that serve it."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests
import torch

from multi_task_kobart.data.batching import pad_sources
from multi_task_kobart.generation import DEFAULT_GENERATION
from multi_task_kobart.model import MultiTaskKoBART
from multi_task_kobart.serving.runtime import model_fingerprint
from multi_task_kobart.tokenizer import PAD_ID, encode_sources, load_tokenizer

APP_STARTUP_S = 300


class Reference:
    """``model.generate`` in this process on exactly the padded batch the server builds."""

    def __init__(self, checkpoint: Path) -> None:
        self.model = MultiTaskKoBART.from_pretrained(checkpoint)
        self.tokenizer = load_tokenizer(checkpoint)
        self.model_id = model_fingerprint(checkpoint)

    def batch(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, _ = encode_sources(self.tokenizer, texts, max_length=512)
        return pad_sources(ids, PAD_ID)

    @torch.inference_mode()
    def generate(self, texts: list[str], task: str, **overrides: Any) -> list[list[int]]:
        input_ids, attention_mask = self.batch(texts)
        out = self.model.generate(input_ids=input_ids, attention_mask=attention_mask, task=task,
                                  **{**DEFAULT_GENERATION.kwargs(), **overrides})
        return [strip_pads(row) for row in out.tolist()]

    def predict_task(self, texts: list[str]) -> list[str]:
        return self.model.predict_task(*self.batch(texts))

    def text(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)


def strip_pads(ids: list[int]) -> list[int]:
    while len(ids) > 1 and ids[-1] == PAD_ID:
        ids = ids[:-1]
    return ids


def post(url: str, path: str, body: Any, headers: dict[str, str] | None = None,
         expect: int | None = 200) -> requests.Response:
    response = requests.post(f"{url}{path}", json=body, headers=headers, timeout=120)
    if expect is not None:
        assert response.status_code == expect, (response.status_code, response.text)
    return response


def generate(url: str, body: dict[str, Any], headers: dict[str, str] | None = None) -> dict[str, Any]:
    return post(url, "/v1/generate", {**body, "return_token_ids": True}, headers).json()


def assert_clean_error(response: Any, *, ours: bool = True) -> None:
    """An error answer (a ``requests`` or a schemathesis response) that shows the client nothing of
    the server's insides: no traceback, no file paths; from our ingress (``ours``) also the JSON
    shape ``{"detail", "request_id"}``, with the id Serve returns in ``X-Request-ID``."""
    for marker in ("Traceback", 'File "', "site-packages", "ray::", "RayTaskError"):
        assert marker not in response.text, (response.status_code, response.text)
    if ours:
        body = response.json()
        assert set(body) == {"detail", "request_id"} and body["detail"], body
        header = {name.lower(): value for name, value in response.headers.items()}["x-request-id"]
        assert body["request_id"] == (header[0] if isinstance(header, list) else header), (body, header)


def serve_logs(pattern: str) -> str:
    """The text of this session's Serve log files named like ``pattern`` (e.g. ``proxy_*.log``)."""
    import ray

    folder = Path(ray._private.worker._global_node.get_logs_dir_path()) / "serve"
    return "\n".join(path.read_text(errors="replace") for path in sorted(folder.glob(pattern)))


def serve_pids(prefix: str) -> dict[str, int]:
    """PIDs of the live Serve actors whose name starts with ``prefix``, by actor name: replicas are
    ``SERVE_REPLICA::<app>#<deployment>#<id>``, the proxy ``SERVE_PROXY_ACTOR-<node>``. Read from
    the GCS actor table, which works without the dashboard (``ray.util.state`` needs it)."""
    import ray

    actors = ray._private.state.actors(actor_state_name="ALIVE").values()
    return {actor["Name"]: actor["Pid"] for actor in actors if actor["Name"].startswith(prefix)}


def replica_prefix(app: str, deployment: str = "") -> str:
    return f"SERVE_REPLICA::{app}#{deployment + '#' if deployment else ''}"


def deploy(args: Any, name: str, url: str, headers: dict[str, str] | None = None) -> None:
    """Run ``build_app(args)`` as application ``name`` on route "/" and wait for /healthz."""
    from ray import serve

    from multi_task_kobart.serving.app import build_app

    serve.run(build_app(args), name=name, route_prefix="/")
    deadline = time.monotonic() + APP_STARTUP_S
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/healthz", headers=headers, timeout=10).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"application {name!r} did not become healthy within {APP_STARTUP_S}s")


def undeploy(name: str) -> None:
    from ray import serve

    serve.delete(name)
