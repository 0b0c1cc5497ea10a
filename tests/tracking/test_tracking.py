"""multi_task_kobart.tracking against two real backends: a local SQLite store and `mlflow server`.

Both backends go through the same checks: a run with flat params and metrics, an artifact, a
registered pyfunc model with the alias "candidate", ``resolve_model_dir`` on
``models:/<name>@candidate`` giving a directory that ``MultiTaskKoBART.from_pretrained`` loads,
and the pyfunc returning generated strings.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import torch

import mlflow
from mlflow import MlflowClient

from multi_task_kobart import tracking
from multi_task_kobart.config import TrackingConfig
from multi_task_kobart.serving import PYFUNC_MODEL_PATH
from multi_task_kobart.tasks import TASKS

MLFLOW_BIN = Path(sys.executable).with_name("mlflow")


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(autouse=True)
def _isolate_mlflow_globals(monkeypatch):
    """MLflow keeps the tracking URI in a global and exports it to os.environ: undo both."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    yield
    if mlflow.active_run() is not None:
        mlflow.end_run()
    mlflow.set_tracking_uri(None)
    mlflow.set_registry_uri(None)


@pytest.fixture(scope="module")
def checkpoint_dir(tiny_checkpoint) -> Path:
    """The session's tiny checkpoint (weights, config, tokenizer, train config, optimizer state)."""
    return tiny_checkpoint


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real tracking server on a free loopback port in front of a SQLite store (proxied local
    artifacts), started by the helper that Ray Tune sweeps use for concurrent trials."""
    store = tracking.normalize_tracking_uri(tmp_path_factory.mktemp("mlflow-server") / "mlflow.db")
    with tracking.local_tracking_server(store) as url:
        yield url


@pytest.fixture(params=["local", "server"])
def tracking_uri(request, tmp_path) -> str:
    if request.param == "server":
        return request.getfixturevalue("mlflow_server")
    return tracking.normalize_tracking_uri(tmp_path / "store")


def _cfg(uri: str, experiment: str = "mtk-test") -> TrackingConfig:
    return TrackingConfig(tracking_uri=uri, experiment_name=experiment)


def _register(checkpoint_dir: Path, name: str):
    return tracking.log_and_register_model(checkpoint_dir, python_model=PYFUNC_MODEL_PATH,
                                           registered_model_name=name)


# --------------------------------------------------------------------------- pure helpers


def test_flatten_params_makes_flat_safe_and_bounded_values() -> None:
    flat = tracking.flatten_params({
        "training": {"lr": 3e-4, "task_weights": {"style_transfer": 1.5}, "betas": [0.9, 0.98]},
        "tasks": list(TASKS), "data": {"source": "말" * 7000}, "name": None, "odd key!": 1})
    assert flat["training.lr"] == "0.0003"
    assert flat["training.task_weights.style_transfer"] == "1.5"
    assert flat["training.betas"] == "[0.9, 0.98]"
    assert json.loads(flat["tasks"]) == list(TASKS)
    assert len(flat["data.source"]) == tracking.MAX_PARAM_VALUE_CHARS
    assert flat["data.source"].endswith("[truncated]")
    assert flat["name"] == "None" and flat["odd key_"] == "1"


def test_tracking_uri_resolution(tmp_path, monkeypatch) -> None:
    root = tracking.project_root()
    assert (root / "pyproject.toml").is_file()
    assert tracking.default_tracking_uri() == f"sqlite:///{root}/mlruns/mlflow.db"
    assert tracking.artifact_root_for(tracking.default_tracking_uri()) == root / "mlruns" / "artifacts"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert tracking.default_tracking_uri() == "http://127.0.0.1:5999"
    assert tracking.resolve_tracking_uri(str(tmp_path)) == f"sqlite:///{tmp_path}/mlflow.db"
    assert tracking.resolve_tracking_uri(str(tmp_path / "x.db")) == f"sqlite:///{tmp_path}/x.db"
    assert tracking.artifact_root_for("http://127.0.0.1:5999") is None


def test_resolve_model_dir_rejects_unknown_paths(tmp_path, checkpoint_dir) -> None:
    assert tracking.resolve_model_dir(checkpoint_dir) == checkpoint_dir
    with pytest.raises(FileNotFoundError, match="neither an existing directory"):
        tracking.resolve_model_dir(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        tracking.resolve_model_dir(tmp_path)


def test_disabled_tracking_is_a_no_op() -> None:
    with tracking.start_run(TrackingConfig(enabled=False), "off", {"a": 1}) as run:
        assert run is None
        tracking.log_metrics({"loss": 1.0}, step=1)  # no active run: must not raise


def test_start_run_takes_a_tracking_config_only(tmp_path) -> None:
    with pytest.raises(TypeError, match="needs a TrackingConfig, got dict"):
        with tracking.start_run({"tracking_uri": str(tmp_path)}, "dict-config"):
            pass


def test_register_rejects_a_python_model_that_is_not_a_py_file(checkpoint_dir, tmp_path) -> None:
    with tracking.start_run(_cfg(tracking.normalize_tracking_uri(tmp_path / "store")), "bad-code"):
        for bad in (tmp_path / "missing.py", checkpoint_dir / "config.json"):
            with pytest.raises(FileNotFoundError, match="is not an existing .py file"):
                tracking.log_and_register_model(checkpoint_dir, python_model=bad,
                                                registered_model_name="never")


# --------------------------------------------------------------------------- both backends


def test_run_params_metrics_and_artifact(tracking_uri, tmp_path) -> None:
    params = {"training": {"lr": 1e-3, "max_steps": 3}, "tasks": list(TASKS)}
    with tracking.start_run(_cfg(tracking_uri), "unit-run", params) as run:
        for step in (1, 2):
            tracking.log_metrics({"train/loss": 2.0 / step, "nan_metric": float("nan")}, step=step)
        note = tmp_path / "note.txt"
        note.write_text("hello")
        tracking.log_artifact(note)
        run_id = run.info.run_id
    client = MlflowClient(tracking_uri=tracking_uri)
    finished = client.get_run(run_id)
    assert finished.info.status == "FINISHED"
    assert finished.data.params["training.lr"] == "0.001"
    assert finished.data.params["training.max_steps"] == "3"
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [2.0, 1.0]
    assert "nan_metric" not in finished.data.metrics
    assert [a.path for a in client.list_artifacts(run_id)] == ["note.txt"]
    if tracking_uri.startswith("sqlite:///"):
        store_dir = Path(tracking_uri[len("sqlite:///"):]).parent
        assert finished.info.artifact_uri.startswith((store_dir / "artifacts").as_uri())


def test_child_runs_point_at_their_parent(tracking_uri) -> None:
    with tracking.start_run(_cfg(tracking_uri), "sweep") as parent:
        parent_id = parent.info.run_id
    with tracking.start_run(_cfg(tracking_uri), "trial-0", {"lr": 1e-4},
                            parent_run_id=parent_id) as child:
        child_id = child.info.run_id
    child_run = MlflowClient(tracking_uri=tracking_uri).get_run(child_id)
    assert child_run.data.tags["mlflow.parentRunId"] == parent_id
    # A retried trial finds its run by name under the parent; the sweep ends what Tune killed.
    assert tracking.find_child_run(_cfg(tracking_uri), parent_id, "trial-0") == child_id
    assert tracking.find_child_run(_cfg(tracking_uri), parent_id, "trial-1") is None
    client = MlflowClient(tracking_uri=tracking_uri)
    # A run whose process was killed: created, never ended.
    killed_id = client.create_run(child_run.info.experiment_id, run_name="trial-1",
                                  tags={"mlflow.parentRunId": parent_id}).info.run_id
    ended = tracking.close_child_runs(_cfg(tracking_uri), parent_id, {"trial-1": "KILLED", "trial-0": "KILLED"},
                                      tags={"trial-1": {"mtk.stopped_early": "true"}})
    assert ended == 1  # trial-0 had ended itself and keeps its status
    assert client.get_run(child_id).info.status == "FINISHED"
    killed_run = client.get_run(killed_id)
    assert killed_run.info.status == "KILLED" and killed_run.data.tags["mtk.stopped_early"] == "true"


def test_register_resolve_and_predict(tracking_uri, checkpoint_dir, tmp_path) -> None:
    from multi_task_kobart.model import MultiTaskKoBART

    name = "mtk-tiny"
    with tracking.start_run(_cfg(tracking_uri), "train-run", {"model": {"preset": "tiny"}}) as run:
        version = _register(checkpoint_dir, name)
    assert version.name == name and "candidate" in version.aliases
    assert version.run_id == run.info.run_id
    client = MlflowClient(tracking_uri=tracking_uri)
    assert client.get_model_version_by_alias(name, "candidate").version == version.version

    local = tracking.resolve_model_dir(f"models:/{name}@candidate", tracking_uri=tracking_uri,
                                       dst_dir=tmp_path / "download")
    assert (local / "model.safetensors").is_file() and (local / "tokenizer.json").is_file()
    assert not (local / "optimizer.pt").exists()
    loaded = MultiTaskKoBART.from_pretrained(local)
    original = MultiTaskKoBART.from_pretrained(checkpoint_dir)
    for (key, a), b in zip(loaded.state_dict().items(), original.state_dict().values()):
        assert torch.equal(a, b), key
    by_number = tracking.resolve_model_dir(f"models:/{name}/{version.version}",
                                           tracking_uri=tracking_uri, dst_dir=tmp_path / "v")
    assert (by_number / "config.json").read_text() == (local / "config.json").read_text()
    by_run = tracking.resolve_model_dir(f"runs:/{run.info.run_id}/model", tracking_uri=tracking_uri,
                                        dst_dir=tmp_path / "r")
    assert (by_run / "model.safetensors").read_bytes() == (local / "model.safetensors").read_bytes()

    import pandas as pd

    pyfunc = tracking.load_pyfunc_model(f"models:/{name}@candidate", tracking_uri=tracking_uri)
    frame = pd.DataFrame({"task": ["style_transfer", "qa_generation", "style_transfer"],
                          "input": ["이거 좀 도와주세요", "질문: 서울의 인구는?", "빨리 와"]})
    outputs = pyfunc.predict(frame, params={"max_new_tokens": 4})
    assert isinstance(outputs, list) and len(outputs) == 3
    assert all(isinstance(text, str) for text in outputs)


def test_mlflow_models_serve_answers_http_requests_for_the_registered_model(checkpoint_dir, tmp_path) -> None:
    """The registered pyfunc behind MLflow's own scoring server (`mlflow models serve`), real HTTP.

    `make serve` runs the Ray Serve application now (tests/serving/test_make_serve.py); the pyfunc
    keeps working with MLflow's server, as the README says.
    """
    uri = tracking.normalize_tracking_uri(tmp_path / "store")
    with tracking.start_run(_cfg(uri), "serve-run"):
        _register(checkpoint_dir, "mtk-serve")
    port = _free_port()
    log = open(tmp_path / "serve.log", "wb")
    # MLflow starts uvicorn from PATH: put this interpreter's bin folder first.
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "PATH": f"{MLFLOW_BIN.parent}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        [str(MLFLOW_BIN), "models", "serve", "-m", "models:/mtk-serve@candidate", "--env-manager", "local",
         "--host", "127.0.0.1", "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    body = json.dumps({"dataframe_records": [{"task": "style_transfer", "input": "빨리 와"},
                                             {"task": "qa_generation", "input": "질문: 서울의 인구는?"}],
                       "params": {"num_beams": 2, "max_new_tokens": 6}})  # as the README shows
    try:
        deadline, answer = time.monotonic() + 120, None
        while answer is None and time.monotonic() < deadline:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
            request = urllib.request.Request(f"http://127.0.0.1:{port}/invocations", data=body.encode(),
                                             headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    answer = json.loads(response.read())
            except OSError:
                time.sleep(1)
        assert answer is not None, (tmp_path / "serve.log").read_text()[-3000:]
        predictions = answer["predictions"]
        assert len(predictions) == 2 and all(isinstance(text, str) for text in predictions)
    finally:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
        log.close()


def test_models_uri_resolves_against_the_given_store_not_the_global_one(checkpoint_dir, tmp_path) -> None:
    """A fresh process (jobs/evaluate.py) has no global MLflow URI pointing at the store yet."""
    uri = tracking.normalize_tracking_uri(tmp_path / "store")
    with tracking.start_run(_cfg(uri), "resolve-run"):
        _register(checkpoint_dir, "mtk-resolve")
    mlflow.set_tracking_uri(tracking.normalize_tracking_uri(tmp_path / "elsewhere"))
    local = tracking.resolve_model_dir("models:/mtk-resolve@candidate", tracking_uri=uri,
                                       dst_dir=tmp_path / "download")
    assert (local / "model.safetensors").read_bytes() == (checkpoint_dir / "model.safetensors").read_bytes()
