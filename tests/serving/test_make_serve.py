"""`make serve` as a user runs it: `serve run <config>` on a model registered in an MLflow store,
then real HTTP. The colocated config keeps the start short (two replicas); its own Ray instance
(RAY_ADDRESS=local, never someone else's cluster) is stopped with Ctrl-C, as a user would."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import mlflow
import pytest
import requests
import yaml

from multi_task_kobart import tracking
from multi_task_kobart.config import TrackingConfig
from multi_task_kobart.serving import PYFUNC_MODEL_PATH
from multi_task_kobart.serving.app import ServeArgs

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_shipped_configs_bind_loopback_bound_their_queues_and_validate():
    from ray.serve.schema import ServeDeploySchema

    for name, topology in (("config.yaml", "fanout"), ("config-colocated.yaml", "colocated")):
        config = yaml.safe_load((ROOT / "serve" / name).read_text())
        schema = ServeDeploySchema.model_validate(config)
        assert schema.http_options.host == "127.0.0.1" and schema.http_options.port == 8000
        [app] = config["applications"]
        assert app["import_path"] == "multi_task_kobart.serving.app:build_app"
        args = ServeArgs.model_validate(app["args"])
        assert (args.topology, args.model) == (topology, "models:/multi-task-kobart-tiny@candidate")
        models = [args.encoder, *args.decoder_settings().values()] if topology == "fanout" else [args.colocated]
        assert all(hop.max_queued_requests > 0 for hop in [args.ingress, *models]), name  # -1: unbounded


@pytest.fixture
def registered(tiny_checkpoint, tmp_path, monkeypatch) -> str:
    """``models:/mtk-make-serve@candidate`` in a store of its own; MLflow's globals restored after."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = tracking.normalize_tracking_uri(tmp_path / "store")
    with tracking.start_run(TrackingConfig(tracking_uri=uri, experiment_name="make-serve"), "serve"):
        tracking.log_and_register_model(tiny_checkpoint, python_model=PYFUNC_MODEL_PATH,
                                        registered_model_name="mtk-make-serve")
    yield uri
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


def test_make_serve_answers_over_http(registered, tmp_path):
    port = _free_port()
    config = yaml.safe_load((ROOT / "serve" / "config-colocated.yaml").read_text())
    config["http_options"]["port"] = port
    config["applications"][0]["args"]["model"] = "models:/mtk-make-serve@candidate"
    config_path = tmp_path / "serve.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log = open(tmp_path / "serve.log", "wb")
    # -o: treat the install stamp as up to date (the suite already runs inside the installed venv).
    proc = subprocess.Popen(["make", "-s", "-o", ".venv/.installed", "serve", f"SERVE_CONFIG={config_path}",
                             f"MLFLOW_DB={registered}"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "RAY_ADDRESS": "local"}, start_new_session=True)
    try:
        body = _wait_for_answer(f"http://127.0.0.1:{port}", proc, tmp_path / "serve.log")
        assert body["outputs"][0]["task"] == "style_transfer" and isinstance(body["outputs"][0]["text"], str)
        assert (body["model"]["name"], body["model"]["version"]) == ("mtk-make-serve", "1")
    finally:
        _stop(proc)
        log.close()


def _wait_for_answer(url: str, proc: subprocess.Popen, log: Path, timeout_s: float = 300) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()[-3000:]
        try:
            response = requests.post(f"{url}/v1/generate", json={"task": "style_transfer", "text": "빨리 와"},
                                     timeout=30)
            if response.status_code == 200:
                return response.json()
        except requests.RequestException:
            pass
        time.sleep(1)
    raise AssertionError(f"no answer within {timeout_s}s:\n{log.read_text()[-3000:]}")


def _stop(proc: subprocess.Popen) -> None:
    """Ctrl-C (serve run shuts Serve and its Ray down), then SIGKILL for whatever is left of the group."""
    for sig, wait_s in ((signal.SIGINT, 60), (signal.SIGKILL, 20)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait_s)
        except subprocess.TimeoutExpired:
            pass
