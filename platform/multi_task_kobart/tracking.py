"""MLflow tracking: the one place that knows tracking URIs, experiments, run nesting and the registry.

Store layout of the embedded default (no server needed)::

    <project>/mlruns/mlflow.db                      runs, params, metrics, registered models (SQLite)
    <project>/mlruns/artifacts/<experiment>/...     artifacts and logged models of that experiment

SQLite, not the ``./mlruns`` file store: MLflow 3 made SQLite its default backend, keeps the file
store in maintenance mode and (since 3.x) refuses to open it unless ``MLFLOW_ALLOW_FILE_STORE`` is
set; the model registry is built for the SQL backend. ``MLFLOW_TRACKING_URI`` (or
``tracking.tracking_uri`` in the config) replaces the default, e.g. ``http://127.0.0.1:5000`` for a
tracking server. Browse the default store with::

    mlflow ui --backend-store-uri sqlite:///<project>/mlruns/mlflow.db \
              --default-artifact-root <project>/mlruns/artifacts --host 127.0.0.1 --port 5000

Callers log from rank 0 only. Tune trials become child runs by passing ``parent_run_id`` (an id
travels between processes; MLflow's "active run" does not).

Every MLflow call in the project goes through this module and names its store explicitly: MLflow
left to itself (no URI set, as in a fresh process) silently creates ``./mlflow.db`` in whatever
the cwd is and then finds nothing there.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

from multi_task_kobart.config import TrackingConfig
from multi_task_kobart.generation import DEFAULT_GENERATION
from multi_task_kobart.model import WEIGHTS_NAME
from multi_task_kobart.model_config import CONFIG_NAME
from multi_task_kobart.training.checkpoint import OPTIMIZER, SCHEDULER

# MLflow's limits (mlflow.utils.validation): longer param values or keys are rejected by the store.
MAX_PARAM_VALUE_CHARS = 6000
MAX_KEY_CHARS = 250
_TRUNCATED = "...[truncated]"
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")

#: Files a served model needs from a checkpoint; optimizer/scheduler state stays behind.
_SERVING_SKIP = (OPTIMIZER, SCHEDULER)
_REQUIRED_CHECKPOINT_FILES = (WEIGHTS_NAME, CONFIG_NAME)
_PYFUNC_ARTIFACT_KEY = "checkpoint"
#: MLflow accepts at most 1000 metrics per log_batch call.
_METRICS_PER_BATCH = 500
_MODEL_URI_SCHEMES = ("models", "runs", "mlflow-artifacts", "s3", "gs", "wasbs", "hdfs", "file",
                      "http", "https", "dbfs")


# --------------------------------------------------------------------------- URIs and stores


def project_root() -> Path:
    """The project folder (the one holding pyproject.toml) above this package, else the cwd.

    The package is installed editable, so even a Ray job whose cwd is an uploaded copy of the
    working dir imports it from the project: the default store then stays in one place.
    """
    for parent in Path(__file__).resolve().parents:
        if (parent / "pyproject.toml").is_file():
            return parent
    return Path.cwd()


def default_tracking_uri() -> str:
    """``MLFLOW_TRACKING_URI`` if set, else the SQLite store in ``<project>/mlruns/mlflow.db``."""
    env_uri = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    if env_uri:
        return normalize_tracking_uri(env_uri)
    return f"sqlite:///{project_root() / 'mlruns' / 'mlflow.db'}"


def normalize_tracking_uri(uri: str | Path) -> str:
    """Turn a bare local path into a store URI; URIs with a scheme pass through unchanged.

    ``path/to/x.db`` -> ``sqlite:///abs/path/to/x.db``; any other bare path is treated as a store
    folder and gets ``mlflow.db`` inside it (the file store would need MLFLOW_ALLOW_FILE_STORE).
    """
    text = str(uri).strip()
    if not text:
        raise ValueError("tracking URI is empty; pass a URI such as sqlite:///abs/mlflow.db, "
                         "http://127.0.0.1:5000, or a local folder.")
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*:", text) and not re.match(r"^[A-Za-z]:[\\/]", text):
        return text
    path = Path(text).expanduser().resolve()
    db_path = path if path.suffix == ".db" else path / "mlflow.db"
    return f"sqlite:///{db_path}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """An explicit URI (config) wins, then ``MLFLOW_TRACKING_URI``, then the project default."""
    return normalize_tracking_uri(uri) if uri else default_tracking_uri()


def artifact_root_for(tracking_uri: str) -> Path | None:
    """Artifact root beside a local SQLite store (``<db folder>/artifacts``); None for servers.

    A tracking server decides artifact locations itself, and without an explicit location an
    in-process SQL store would put artifacts under ``./mlruns`` of whatever the cwd happens to be.
    """
    if not tracking_uri.startswith("sqlite:///"):
        return None
    db_path = Path(unquote(tracking_uri[len("sqlite:///"):]))
    return db_path.parent / "artifacts"


def configure(tracking_uri: str | None = None) -> str:
    """Point MLflow at the resolved store (creating a local store's folder) and return its URI.

    The registry is left to follow the tracking URI (MLflow's default), so one setting moves
    both. MLflow also exports the URI as MLFLOW_TRACKING_URI, so subprocesses log to the same store.
    """
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(unquote(uri[len("sqlite:///"):])).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    return uri


def get_or_create_experiment(name: str, tracking_uri: str | None = None) -> str:
    """Experiment id for ``name``, creating it (with a project-local artifact root) if needed."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    uri = configure(tracking_uri)
    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    root = artifact_root_for(uri)
    location = (root / _safe_dirname(name)).as_uri() if root is not None else None
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        # Another rank or trial created it between our lookup and create: use theirs.
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def _safe_dirname(name: str) -> str:
    return re.sub(r"[^\w.\-]", "_", name) or "experiment"


def _store_uri(tracking_uri: str | None) -> str:
    """The store to talk to: ``tracking_uri`` resolved, else the active run's, else the default.

    Never MLflow's own fallback (``./mlflow.db`` in the cwd), which is what an unconfigured
    process gets from ``MlflowClient()`` or ``mlflow.artifacts.download_artifacts(run_id=...)``.
    """
    import mlflow

    if tracking_uri is None and mlflow.active_run() is not None:
        return mlflow.get_tracking_uri()  # the run was started against this store
    return configure(tracking_uri)


def _client(tracking_uri: str | None = None) -> Any:
    """An ``MlflowClient`` on the resolved store (see :func:`_store_uri`), registry included."""
    from mlflow import MlflowClient

    uri = _store_uri(tracking_uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


# --------------------------------------------------------------------------- runs


@contextlib.contextmanager
def start_run(cfg: TrackingConfig, run_name: str | None, params: Mapping[str, Any] | None = None, *,
              parent_run_id: str | None = None, run_id: str | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[Any]:
    """Open an MLflow run (a child of ``parent_run_id`` if given) and log ``params`` flat.

    When ``cfg.enabled`` is false this yields None and the ``log_*`` helpers become no-ops.
    ``run_id`` resumes a run. A failure inside the block ends the run as FAILED (MLflow's
    ActiveRun does that on exit).
    """
    if not isinstance(cfg, TrackingConfig):
        raise TypeError(f"start_run needs a TrackingConfig, got {type(cfg).__name__}; build one with "
                        "TrackingConfig(tracking_uri=..., experiment_name=...).")
    if not cfg.enabled:
        yield None
        return
    import mlflow

    uri = configure(cfg.tracking_uri)
    experiment_id = get_or_create_experiment(cfg.experiment_name, uri)
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name,
                          parent_run_id=parent_run_id, tags=dict(tags or {})) as run:
        if params:
            log_params_flat(params)
        yield run


def find_child_run(cfg: TrackingConfig, parent_run_id: str, run_name: str) -> str | None:
    """The id of the run named ``run_name`` nested under ``parent_run_id``, if there is one."""
    uri = configure(cfg.tracking_uri)
    experiment_id = get_or_create_experiment(cfg.experiment_name, uri)
    runs = _client(uri).search_runs(
        [experiment_id], max_results=1, order_by=["attributes.start_time DESC"],
        filter_string=(f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                       f"attributes.run_name = '{run_name}'"))
    return runs[0].info.run_id if runs else None


def close_child_runs(cfg: TrackingConfig, parent_run_id: str, statuses: Mapping[str, str], *,
                     tags: Mapping[str, Mapping[str, str]] | None = None) -> int:
    """Tag the runs nested under ``parent_run_id`` (``tags``: run name -> tags) and end those
    still RUNNING with ``statuses[run name]``; returns how many were ended."""
    uri = configure(cfg.tracking_uri)
    client = _client(uri)
    experiment_id = get_or_create_experiment(cfg.experiment_name, uri)
    ended = 0
    for run in client.search_runs([experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'"):
        name = run.info.run_name
        for key, value in (tags or {}).get(name, {}).items():
            client.set_tag(run.info.run_id, key, value)
        if run.info.status == "RUNNING" and name in statuses:
            client.set_terminated(run.info.run_id, status=statuses[name])
            ended += 1
    return ended


@contextlib.contextmanager
def local_tracking_server(store_uri: str, *, host: str = "127.0.0.1",
                          startup_timeout_s: float = 120.0) -> Iterator[str]:
    """Run ``mlflow server`` on a local SQLite store for the block; yields its http URI.

    SQLite takes one writer at a time: processes writing one file at once (concurrent Tune
    trials) fail with "database is locked". Through one server they queue instead. Artifacts
    are served from the store's usual artifact folder, so runs look the same either way.
    """
    import socket
    import subprocess
    import sys
    import urllib.request

    root = artifact_root_for(store_uri)
    with socket.socket() as sock:
        sock.bind((host, 0))
        port = sock.getsockname()[1]
    command = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port),
               "--backend-store-uri", store_uri, "--workers", "1"]
    if root is not None:
        command += ["--artifacts-destination", str(root)]
    # Its own session: a Ctrl-C meant for the caller must not take the server down mid-cleanup.
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    uri = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + startup_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{uri}/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                error = process.stderr.read()[-2000:] if process.poll() is not None else "timed out"
                raise RuntimeError(f"mlflow server on {store_uri} did not start: {error}")
            time.sleep(0.5)
        yield uri
    finally:
        import signal

        os.killpg(process.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


def flatten_params(params: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested mapping -> ``{"a.b.c": "value"}`` with MLflow-safe keys and length-capped values.

    Lists and dicts below the leaves are JSON (Korean text kept readable); values longer than
    MLflow's 6000-character limit are cut and marked, so logging never fails on a long config.
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten_params(value, prefix=f"{name}."))
            continue
        flat[_safe_key(name)] = _param_value(value)
    return flat


def _safe_key(name: str) -> str:
    return _BAD_KEY_CHARS.sub("_", str(name))[:MAX_KEY_CHARS]


def _param_value(value: Any) -> str:
    if isinstance(value, (list, tuple, Mapping)):
        text = json.dumps(value, ensure_ascii=False, default=str)
    else:
        text = str(value)
    if len(text) > MAX_PARAM_VALUE_CHARS:
        text = text[:MAX_PARAM_VALUE_CHARS - len(_TRUNCATED)] + _TRUNCATED
    return text


def log_params_flat(params: Mapping[str, Any]) -> None:
    """Log a (nested) dict as flat params on the active run; a no-op without one."""
    import mlflow

    if mlflow.active_run() is None:
        return
    mlflow.log_params(flatten_params(params))


def log_metrics(metrics: Mapping[str, float], step: int) -> None:
    """Log numeric metrics at ``step`` on the active run; a no-op without one.

    Keys are made MLflow-safe; values that are not finite numbers are dropped (a NaN loss is
    logged by the trainer as an event, not as a point that breaks every chart).
    """
    import mlflow

    if mlflow.active_run() is None:
        return
    clean = {}
    for key, value in metrics.items():
        number = float(value)
        if math.isfinite(number):
            clean[_safe_key(key)] = number
    if clean:
        mlflow.log_metrics(clean, step=int(step))


def log_artifact(path: str | Path, artifact_path: str | None = None) -> None:
    """Log a file or a whole directory (e.g. an evaluation report) on the active run, if any."""
    import mlflow

    if mlflow.active_run() is None:
        return
    path = Path(path)
    if path.is_dir():
        mlflow.log_artifacts(str(path), artifact_path=artifact_path)
    elif path.is_file():
        mlflow.log_artifact(str(path), artifact_path=artifact_path)
    else:
        raise FileNotFoundError(f"cannot log artifact {str(path)!r}: no such file or directory.")


def log_report(metrics: Mapping[str, float], files: Iterable[str | Path], *, artifact_path: str,
               run_id: str | None = None, step: int | None = None,
               tracking_uri: str | None = None) -> str:
    """Log ``metrics`` at ``step`` and ``files`` under ``artifact_path`` to one run; returns its id.

    ``run_id`` names the run (a finished one is fine: the evaluation job logs to the training
    run); without it the active run is used. Non-finite metrics are dropped, as in
    :func:`log_metrics`. Explicit run ids, so it works inside another run's ``with`` block too.
    """
    import mlflow
    from mlflow.entities import Metric

    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise ValueError("no MLflow run to log to: pass run_id, or call this inside "
                             "tracking.start_run(...).")
        run_id = active.info.run_id
    files = [Path(path) for path in files]
    missing = [str(path) for path in files if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"cannot log {missing} to run {run_id}: no such file(s).")
    mlflow_client = _client(tracking_uri)
    timestamp = int(time.time() * 1000)
    entries = [Metric(_safe_key(key), float(value), timestamp, int(step or 0))
               for key, value in metrics.items() if math.isfinite(float(value))]
    for start in range(0, len(entries), _METRICS_PER_BATCH):
        mlflow_client.log_batch(run_id, metrics=entries[start:start + _METRICS_PER_BATCH])
    for path in files:
        mlflow_client.log_artifact(run_id, str(path), artifact_path=artifact_path)
    return run_id


def download_run_artifact(run_id: str, artifact_path: str, *, tracking_uri: str | None = None,
                          dst_dir: str | Path | None = None) -> Path:
    """Download one artifact (file or folder) of ``run_id`` from the resolved store; its local path."""
    import mlflow

    uri = _store_uri(tracking_uri)
    if dst_dir is not None:
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
    local = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path=artifact_path, dst_path=str(dst_dir) if dst_dir else None,
        tracking_uri=uri)
    return Path(local)


def load_pyfunc_model(model_uri: str, *, tracking_uri: str | None = None) -> Any:
    """``mlflow.pyfunc.load_model(model_uri)`` against the resolved store (``models:/name@alias``).

    MLflow resolves ``models:/`` URIs with the process-wide registry URI, so this points the
    process at the store first; a bare ``mlflow.pyfunc.load_model`` in a fresh process would look
    in (and create) ``./mlflow.db`` instead.
    """
    import mlflow

    configure(tracking_uri)
    return mlflow.pyfunc.load_model(model_uri)


# --------------------------------------------------------------------------- models and registry


def _check_checkpoint_dir(checkpoint_dir: Path) -> None:
    missing = [name for name in _REQUIRED_CHECKPOINT_FILES if not (checkpoint_dir / name).is_file()]
    if not checkpoint_dir.is_dir() or missing:
        raise FileNotFoundError(
            f"{str(checkpoint_dir)!r} is not a checkpoint directory: missing "
            f"{missing or list(_REQUIRED_CHECKPOINT_FILES)}; expected {' + '.join(_REQUIRED_CHECKPOINT_FILES)} "
            "(MultiTaskKoBART.save_pretrained) and the tokenizer files.")


def _stage_for_serving(checkpoint_dir: Path, staging: Path) -> Path:
    """Copy the checkpoint minus optimizer/scheduler state (twice the weights, useless to serve)."""
    target = staging / checkpoint_dir.name
    shutil.copytree(checkpoint_dir, target, ignore=shutil.ignore_patterns(*_SERVING_SKIP))
    return target


def _pip_requirements() -> list[str]:
    """Pinned runtime requirements of the pyfunc model (local build tags such as +cpu dropped)."""
    pins = []
    for dist in ("multi-task-kobart", "torch", "transformers", "tokenizers", "safetensors",
                 "pandas"):
        try:
            pins.append(f"{dist}=={metadata.version(dist).split('+')[0]}")
        except metadata.PackageNotFoundError:
            pins.append(dist)
    return pins


_PARAM_TYPES = {int: "long", float: "double"}


def pyfunc_signature() -> Any:
    """The pyfunc's signature: ``task`` + ``input`` columns in, strings out, and the decoding
    parameters with :data:`DEFAULT_GENERATION`'s values as their defaults."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    defaults = DEFAULT_GENERATION.kwargs()
    return ModelSignature(
        inputs=Schema([ColSpec("string", "task"), ColSpec("string", "input")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec(key, _PARAM_TYPES[type(value)], value)
                            for key, value in defaults.items()]),
    )


def _check_python_model(python_model: str | Path) -> Path:
    path = Path(python_model).expanduser().resolve()
    if path.suffix != ".py" or not path.is_file():
        raise FileNotFoundError(
            f"python_model {str(python_model)!r} is not an existing .py file; pass the model-from-code "
            "file, e.g. multi_task_kobart.serving.PYFUNC_MODEL_PATH.")
    return path


def log_and_register_model(checkpoint_dir: str | Path, *, python_model: str | Path,
                           registered_model_name: str, alias: str | None = "candidate",
                           name: str = "model") -> Any:
    """Log ``checkpoint_dir`` as a pyfunc model on the active run, register it, set ``alias``.

    ``python_model`` is the model-from-code file MLflow runs to build the model (logged as code,
    so nothing is pickled), normally ``multi_task_kobart.serving.PYFUNC_MODEL_PATH``. The
    checkpoint travels as its ``checkpoint`` artifact; ``load_pyfunc_model("models:/<name>@<alias>")
    .predict(pd.DataFrame({"task": [...], "input": [...]}))`` returns generated strings.
    Returns the registered ``ModelVersion`` (with its aliases).
    """
    import mlflow

    checkpoint_dir = Path(checkpoint_dir).resolve()
    _check_checkpoint_dir(checkpoint_dir)
    code = _check_python_model(python_model)
    if mlflow.active_run() is None:
        raise RuntimeError("log_and_register_model needs an active run; call it inside "
                           "tracking.start_run(...).")
    mlflow_client = _client()
    with tempfile.TemporaryDirectory(prefix="mtk-model-") as staging:
        staged = _stage_for_serving(checkpoint_dir, Path(staging))
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(code),
            artifacts={_PYFUNC_ARTIFACT_KEY: str(staged)},
            signature=pyfunc_signature(), pip_requirements=_pip_requirements())
    version = mlflow.register_model(info.model_uri, registered_model_name)
    if alias:
        mlflow_client.set_registered_model_alias(registered_model_name, alias, version.version)
    return mlflow_client.get_model_version(registered_model_name, version.version)


def resolve_model_dir(model: str | Path, *, tracking_uri: str | None = None,
                      dst_dir: str | Path | None = None) -> Path:
    """A local checkpoint directory for ``model``.

    ``model`` is a checkpoint directory, or an MLflow URI: ``models:/name@alias``,
    ``models:/name/3``, ``runs:/<run_id>/<path>`` (or any artifact URI). URIs are downloaded
    (local stores are read in place) and a logged pyfunc model is unwrapped to its checkpoint.
    """
    text = str(model)
    local = Path(text).expanduser()
    if local.is_dir():
        return _find_checkpoint(local.resolve(), text)
    scheme = urlparse(text).scheme
    if scheme not in _MODEL_URI_SCHEMES:
        raise FileNotFoundError(
            f"model {text!r} is neither an existing directory nor an MLflow URI; allowed: a "
            "checkpoint dir, models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/<path>.")
    import mlflow

    # Global, not only passed along: MLflow resolves models:/ URIs with a registry client of
    # its own that reads the process-wide URI and ignores download_artifacts' registry_uri.
    uri = configure(tracking_uri)
    if dst_dir is not None:
        Path(dst_dir).mkdir(parents=True, exist_ok=True)
    downloaded = mlflow.artifacts.download_artifacts(
        artifact_uri=text, dst_path=str(dst_dir) if dst_dir else None,
        tracking_uri=uri, registry_uri=uri)
    return _find_checkpoint(Path(downloaded), text)


def _find_checkpoint(path: Path, source: str) -> Path:
    """``path`` itself if it holds weights + config, else the checkpoint inside an MLflow model."""
    if all((path / name).is_file() for name in _REQUIRED_CHECKPOINT_FILES):
        return path
    mlmodel = path / "MLmodel"
    if mlmodel.is_file():
        flavor = (yaml.safe_load(mlmodel.read_text()) or {}).get("flavors", {})
        artifacts = flavor.get("python_function", {}).get("artifacts", {})
        entry = artifacts.get(_PYFUNC_ARTIFACT_KEY)
        if entry and (path / entry["path"]).is_dir():
            return _find_checkpoint(path / entry["path"], source)
    raise FileNotFoundError(
        f"{source!r} resolved to {str(path)!r}, which holds no checkpoint (needs "
        f"{', '.join(_REQUIRED_CHECKPOINT_FILES)}, or an MLmodel with a "
        f"{_PYFUNC_ARTIFACT_KEY!r} artifact).")


def registered_version(model: str | Path, *, tracking_uri: str | None = None) -> tuple[str, str] | None:
    """(registered name, version) of a ``models:/name@alias`` or ``models:/name/<version>`` URI.

    None for anything else (a directory, ``runs:/...``): those name no registered version. Serve
    replicas report it with every answer, so a client sees which version answered during a rollout.
    """
    text = str(model)
    if not text.startswith("models:/"):
        return None
    name, sep, alias = text[len("models:/"):].partition("@")
    if sep:
        return name, str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    name, _, version = name.rpartition("/")
    return (name, version) if name and version.isdigit() else None
