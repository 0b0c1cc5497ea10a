"""`ray job submit jobs/train.py` against a real `ray start --head` cluster, as a user runs it.

The cluster is ours alone: its own temp dir, free loopback ports, token authentication with a
fresh token, and `ray start --block`, so stopping it is a SIGTERM to the process we started
(never a global `ray stop`, which would also stop other Ray instances on this machine).
The job logs to a throw-away SQLite MLflow store, which the test then reads back.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
RAY_BIN = VENV_BIN / "ray"

pytestmark = pytest.mark.slow


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind(("127.0.0.1", 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _cluster_env(token: str) -> dict[str, str]:
    """Environment for our `ray` CLI calls; the job driver inherits it from the raylet.

    The venv's bin comes first on PATH so that `python` inside the job is this venv's python.
    """
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RAY_ADDRESS", "MLFLOW_"))}
    env.update({
        "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": token,
        "RAY_USAGE_STATS_ENABLED": "0", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
    })
    return env


def _wait_for_dashboard(url: str, token: str, proc: subprocess.Popen, log: Path,
                        timeout_s: float = 180.0) -> None:
    """Poll the job API with our token until it answers (401 would mean a token mix-up)."""
    request = urllib.request.Request(f"{url}/api/jobs/", headers={"Authorization": f"Bearer {token}"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"`ray start --head` exited early with code {proc.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    return
        except urllib.error.HTTPError as error:
            if error.code in (401, 403):
                raise RuntimeError(f"Ray dashboard at {url} rejected our token ({error.code})") from error
            time.sleep(1.0)
        except OSError:
            time.sleep(1.0)
    raise TimeoutError(f"Ray dashboard at {url} did not come up within {timeout_s:.0f}s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen, temp_dir: str) -> None:
    """SIGTERM to `ray start --block` stops exactly the processes it started."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    _kill_leftovers(temp_dir)


def _kill_leftovers(temp_dir: str) -> None:
    """Kill, one by one, any process whose command line names our cluster's temp dir."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            try:
                os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                pass


@pytest.fixture(scope="module")
def ray_head():
    """A one-node Ray cluster on 127.0.0.1 with the dashboard (it serves the job API)."""
    temp_dir = tempfile.mkdtemp(prefix="mtkray", dir="/tmp")  # short: Ray's socket paths are long
    (gcs, dashboard, client, agent_http, agent_grpc, env_agent, metrics, node_mgr,
     obj_mgr) = _free_ports(9)
    token = secrets.token_hex(24)
    env = _cluster_env(token)
    log_path = Path(temp_dir) / "ray-start.log"
    log = open(log_path, "wb")
    proc = subprocess.Popen(
        [str(RAY_BIN), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
         f"--port={gcs}", "--include-dashboard=true", "--dashboard-host=127.0.0.1",
         f"--dashboard-port={dashboard}", f"--ray-client-server-port={client}",
         f"--dashboard-agent-listen-port={agent_http}", f"--dashboard-agent-grpc-port={agent_grpc}",
         f"--runtime-env-agent-port={env_agent}", f"--metrics-export-port={metrics}",
         f"--node-manager-port={node_mgr}", f"--object-manager-port={obj_mgr}",
         # Logical CPUs: 2 training workers x 1 CPU, plus 2 for Ray Data's read/split tasks
         # (with every CPU held by a worker they would wait forever; see trainer.init_ray).
         "--num-cpus=4", "--num-gpus=0", f"--temp-dir={temp_dir}", "--disable-usage-stats"],
        stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=temp_dir)
    address = f"http://127.0.0.1:{dashboard}"
    try:
        _wait_for_dashboard(address, token, proc, log_path)
        yield {"address": address, "env": env, "temp_dir": temp_dir}
    finally:
        _stop(proc, temp_dir)
        log.close()
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_train_job_submits_runs_and_tracks(ray_head, tmp_path) -> None:
    from mlflow import MlflowClient

    store = tmp_path / "mlflow"
    tracking_uri = f"sqlite:///{store / 'mlflow.db'}"
    overrides = [
        "name=job-submit-test", "training.max_steps=4", "training.warmup_steps=1",
        "training.log_every=2", "training.eval_every=4", "training.checkpoint_every=4",
        "training.batch_size=8", "scaling.num_workers=2", "evaluation.enabled=false",
        "training.eval_batches=1", f"data.prepared_dir={tmp_path / 'prepared'}",
        f"run.storage_path={tmp_path / 'runs'}", f"tracking.tracking_uri={tracking_uri}",
        "tracking.experiment_name=job-submit", "tracking.registered_model_name=job-submit-tiny",
    ]
    # --working-dir uploads the project: Ray 2.60 honours .gitignore (.venv/, runs/, mlruns/ ...)
    # and skips .git and .venv by default. `python` is the venv's: its bin leads the cluster's PATH.
    command = [str(RAY_BIN), "job", "submit", "--address", ray_head["address"],
               "--working-dir", ".", "--", "python", "jobs/train.py", "--config", "configs/tiny.yaml"]
    for item in overrides:
        command += ["--set", item]
    result = subprocess.run(command, cwd=ROOT, env=ray_head["env"], capture_output=True,
                            text=True, timeout=540)
    assert result.returncode == 0, (result.stdout + result.stderr)[-6000:]
    assert "succeeded" in result.stdout + result.stderr  # the CLI prints "Job '...' succeeded"

    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name("job-submit")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.max_steps"] == "4"
    assert run.data.params["scaling.num_workers"] == "2"
    assert run.data.params["model.preset"] == "small"  # configs/tiny.yaml uses the small preset
    assert any("loss" in key for key in run.data.metrics), run.data.metrics
    assert Path(experiment.artifact_location.removeprefix("file://")).is_relative_to(store)
