"""The README's local-cluster commands, run as a new user runs them.

The test reads the README's block (token authentication on, `ray start --head`, `ray job submit
--working-dir . -- python jobs/train.py ... --root "$PWD"`) and runs its lines with bash, changed
only where a shared test machine needs it (see :func:`adapt`). The cluster is ours alone: its own
temp dir and free loopback ports; it is stopped by killing the processes that name that temp dir
(never a global `ray stop`, which would also stop other Ray instances on this machine). The job
logs to a throw-away SQLite MLflow store, which the test then reads back.
"""

from __future__ import annotations

import os
import shutil
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent

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


def _cluster_env(home: str, tracking_uri: str) -> dict[str, str]:
    """Environment of a new user's shell; the job driver inherits it from the raylet.

    HOME is a fresh folder, so the README's `ray get-auth-token --generate` writes a new token
    there. The venv's bin comes first on PATH so that `python` inside the job is this venv's;
    MLFLOW_TRACKING_URI points the job at a throw-away store.
    """
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("RAY_", "MLFLOW_", "MTK_"))}
    env.update({
        "HOME": home, "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}",
        "MLFLOW_TRACKING_URI": tracking_uri, "RAY_USAGE_STATS_ENABLED": "0",
        "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
        "PYTHONUNBUFFERED": "1",
    })
    return env


def _our_processes(temp_dir: str) -> list[int]:
    """Processes whose command line names our cluster's temp dir (GCS, raylet, dashboard ...)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if temp_dir in cmdline:
            found.append(int(entry.name))
    return found


def _stop_cluster(temp_dir: str, grace_s: float = 15.0) -> None:
    """SIGTERM our cluster's processes (their workers exit with the raylet), then SIGKILL."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _our_processes(temp_dir):
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        deadline = time.monotonic() + grace_s
        while _our_processes(temp_dir) and time.monotonic() < deadline:
            time.sleep(0.5)


README_BLOCK = "<!-- tested: tests/integration/test_job_submit.py -->"


def readme_cluster_commands() -> list[str]:
    """The shell lines of the README's local-cluster block (continuations joined)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    block = text.split(README_BLOCK, 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    lines = block.replace("\\\n", " ").splitlines()
    return [line.split("  #", 1)[0].strip() for line in lines if line.strip() and not line.startswith("#")]


def adapt(line: str, *, temp_dir: str, ports: dict[str, int], root: Path, overrides: list[str]) -> str | None:
    """The README line as this test runs it. The only changes: our own temp dir and free ports
    (other Ray instances may run on this machine), a throw-away --root, a short run, and no
    `ray stop` (it stops every Ray instance of the machine; the test stops its own processes)."""
    if line.startswith("ray stop"):
        return None
    if line.startswith("ray start"):
        flags = [f"--temp-dir={temp_dir}", "--num-gpus=0", "--disable-usage-stats"]
        flags += [f"--{name}={port}" for name, port in ports.items()]
        # A person types the next command seconds later; a script waits for the job API.
        wait = (f"for _ in $(seq 90); do ray job list --address http://127.0.0.1:{ports['dashboard-port']}"
                " >/dev/null 2>&1 && break; sleep 2; done")
        return f"{line} {' '.join(flags)}\n{wait}"
    line = line.replace("http://127.0.0.1:8265", f"http://127.0.0.1:{ports['dashboard-port']}")
    if "jobs/train.py" in line:
        line = line.replace('"$PWD"', shlex.quote(str(root)))
        line += "".join(f" --set {shlex.quote(item)}" for item in overrides)
    return line


PORT_FLAGS = ("port", "dashboard-port", "ray-client-server-port", "dashboard-agent-listen-port",
              "dashboard-agent-grpc-port", "runtime-env-agent-port", "metrics-export-port",
              "node-manager-port", "object-manager-port")
SHORT_RUN = ["name=readme-cluster", "training.warmup_steps=1", "training.log_every=2",
             "training.eval_every=2", "training.checkpoint_every=2", "training.batch_size=8",
             "training.eval_batches=1", "evaluation.enabled=false",
             "tracking.registered_model_name=readme-cluster-tiny"]


def run_lines(lines: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    script = "set -euo pipefail\n" + "\n".join(lines)
    return subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=540)


@pytest.fixture(scope="module")
def readme_cluster(tmp_path_factory):
    """Run the README's block: token auth, `ray start --head`, `ray job submit` (4 steps)."""
    temp_dir = tempfile.mkdtemp(prefix="mtkray", dir="/tmp")  # short: Ray's socket paths are long
    home, root = tmp_path_factory.mktemp("home"), tmp_path_factory.mktemp("root")
    ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS))))
    store = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    env = _cluster_env(str(home), store)
    commands = readme_cluster_commands()
    adapted = [adapt(line, temp_dir=temp_dir, ports=ports, root=root,
                     overrides=[*SHORT_RUN, "training.max_steps=4"]) for line in commands]
    try:
        first = run_lines([line for line in adapted if line], env)
        # The same job submitted again with more steps resumes from the same checkpoints.
        resubmit = [adapt(line, temp_dir=temp_dir, ports=ports, root=root,
                          overrides=[*SHORT_RUN, "training.max_steps=6"])
                    for line in commands if "jobs/train.py" in line]
        second = run_lines(["export RAY_AUTH_MODE=token", *resubmit], env)
        yield {"commands": commands, "first": first, "second": second, "root": root, "store": store}
    finally:
        _stop_cluster(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _output(result: subprocess.CompletedProcess) -> str:
    return result.stdout + result.stderr


def test_the_readme_block_turns_token_auth_on_and_submits_with_a_stable_root(readme_cluster):
    commands = readme_cluster["commands"]
    assert commands[0] == "export RAY_AUTH_MODE=token"
    assert any(line.startswith("ray get-auth-token --generate") for line in commands)
    assert any("ray job submit" in line and '--root "$PWD"' in line for line in commands)
    first = readme_cluster["first"]
    assert first.returncode == 0, _output(first)[-6000:]
    assert "succeeded" in _output(first)  # the CLI prints "Job '...' succeeded"


def test_checkpoints_and_prepared_data_live_under_the_chosen_root(readme_cluster):
    root, output = readme_cluster["root"], _output(readme_cluster["first"])
    run_dir = root / "runs" / "readme-cluster"
    assert (run_dir / "checkpoint_0000004" / "model.safetensors").is_file()
    assert f"[paths] checkpoints: {run_dir}" in output
    assert f"[paths] prepared data: {root / 'data' / 'prepared' / 'tiny'}" in output
    assert (root / "data" / "prepared" / "tiny").is_dir()


def test_resubmitting_the_same_run_name_resumes(readme_cluster):
    second = readme_cluster["second"]
    assert second.returncode == 0, _output(second)[-6000:]
    assert "resumed from step 4" in _output(second)
    assert (readme_cluster["root"] / "runs" / "readme-cluster" / "checkpoint_0000006").is_dir()


def test_the_job_logged_to_the_tracking_store(readme_cluster):
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=readme_cluster["store"])
    experiment = client.get_experiment_by_name("multi-task-kobart")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1  # the resubmission continued the same MLflow run
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.params["training.max_steps"] == "4"  # params are logged once, at the start
    assert run.data.params["model.preset"] == "small"  # configs/tiny.yaml uses the small preset
    assert any("loss" in key for key in run.data.metrics), run.data.metrics
    version = client.get_model_version_by_alias("readme-cluster-tiny", "candidate")
    assert version.run_id == run.info.run_id
