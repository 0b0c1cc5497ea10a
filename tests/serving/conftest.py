"""Fixtures for the Serve tests: a second (adapter) checkpoint, Serve on a free loopback port,
one deployed application per topology per module, and in-process references to compare with.

The checkpoints are random but seeded (training one here would cost minutes on 2 shared cores):
parity with in-process ``generate`` is a property of the serving code, not of model quality.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def adapter_checkpoint(tmp_path_factory) -> Path:
    """A tiny random model with per-task encoder adapters (non-zero, so encodings differ per task)
    and another width than ``tiny_checkpoint`` (d_model 32 vs 64): mixing their states would crash."""
    import torch

    from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig
    from multi_task_kobart.tokenizer import KOBART_SPECIAL_IDS, load_tokenizer

    torch.manual_seed(1)
    tokenizer = load_tokenizer()
    model = MultiTaskKoBART(MultiTaskKoBARTConfig.tiny(len(tokenizer), d_model=32, adapter_rank=4))
    with torch.no_grad():
        model.shared.weight[list(KOBART_SPECIAL_IDS.values())] = 0.0
        for param in model.adapters.parameters():
            param.normal_(0.0, 0.3)
    out = tmp_path_factory.mktemp("adapter-ckpt") / "checkpoint_000007"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def serve_url(ray_session) -> str:
    """Serve started once per session on 127.0.0.1 and a free port; shut down at the end."""
    from ray import serve

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    yield f"http://127.0.0.1:{port}"
    serve.shutdown()


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """In-process references on one thread: two threads on 2 shared cores wait on each other."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
