"""In-process references for the Serve tests: the same checkpoint, tokenizer and padding, no Ray."""

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
