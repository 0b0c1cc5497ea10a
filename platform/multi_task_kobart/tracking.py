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
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import yaml

# MLflow's limits (mlflow.utils.validation): longer param values or keys are rejected by the store.
MAX_PARAM_VALUE_CHARS = 6000
MAX_KEY_CHARS = 250
_TRUNCATED = "...[truncated]"
_BAD_KEY_CHARS = re.compile(r"[^/\w.\- :]")

#: Files a served model needs from a checkpoint; optimizer/scheduler state stays behind.
_SERVING_SKIP = ("optimizer.pt", "scheduler.pt")
_REQUIRED_CHECKPOINT_FILES = ("model.safetensors", "config.json")
_PYFUNC_CODE = Path(__file__).resolve().parent / "serving" / "mlflow_pyfunc.py"
_PYFUNC_ARTIFACT_KEY = "checkpoint"
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


# --------------------------------------------------------------------------- runs


def _setting(cfg: Any, key: str, default: Any) -> Any:
    """Read ``key`` from a TrackingConfig-like object or a mapping (None = defaults)."""
    if cfg is None:
        return default
    if isinstance(cfg, Mapping):
        return cfg.get(key, default)
    return getattr(cfg, key, default)


@contextlib.contextmanager
def start_run(cfg_tracking: Any, run_name: str | None, params: Mapping[str, Any] | None = None, *,
              parent_run_id: str | None = None, run_id: str | None = None,
              tags: Mapping[str, str] | None = None) -> Iterator[Any]:
    """Open an MLflow run (a child of ``parent_run_id`` if given) and log ``params`` flat.

    ``cfg_tracking`` is a ``TrackingConfig`` (or a mapping with its keys). When tracking is
    disabled this yields None and the ``log_*`` helpers become no-ops. ``run_id`` resumes a run.
    A failure inside the block ends the run as FAILED (MLflow's ActiveRun does that on exit).
    """
    if not _setting(cfg_tracking, "enabled", True):
        yield None
        return
    import mlflow

    uri = configure(_setting(cfg_tracking, "tracking_uri", None))
    experiment_id = get_or_create_experiment(
        _setting(cfg_tracking, "experiment_name", "multi-task-kobart"), uri)
    with mlflow.start_run(run_id=run_id, experiment_id=experiment_id, run_name=run_name,
                          parent_run_id=parent_run_id, tags=dict(tags or {})) as run:
        if params:
            log_params_flat(params)
        yield run


def current_run_id() -> str | None:
    """Id of the active run in this process (pass it to trials as their ``parent_run_id``)."""
    import mlflow

    run = mlflow.active_run()
    return run.info.run_id if run is not None else None


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


# --------------------------------------------------------------------------- models and registry


def _check_checkpoint_dir(checkpoint_dir: Path) -> None:
    missing = [name for name in _REQUIRED_CHECKPOINT_FILES if not (checkpoint_dir / name).is_file()]
    if not checkpoint_dir.is_dir() or missing:
        raise FileNotFoundError(
            f"{str(checkpoint_dir)!r} is not a checkpoint directory: missing "
            f"{missing or list(_REQUIRED_CHECKPOINT_FILES)}; expected model.safetensors + "
            "config.json (MultiTaskKoBART.save_pretrained) and the tokenizer files.")


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


def _pyfunc_signature() -> Any:
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec("string", "task"), ColSpec("string", "input")]),
        outputs=Schema([ColSpec("string")]),
        params=ParamSchema([ParamSpec("max_new_tokens", "long", 48),
                            ParamSpec("num_beams", "long", 1)]),
    )


def log_and_register_model(checkpoint_dir: str | Path, *, registered_model_name: str,
                           alias: str | None = "candidate", name: str = "model") -> Any:
    """Log ``checkpoint_dir`` as a pyfunc model on the active run, register it, set ``alias``.

    The pyfunc (``serving/mlflow_pyfunc.py``, logged as code, so nothing is pickled) carries the
    checkpoint as its ``checkpoint`` artifact; ``mlflow.pyfunc.load_model("models:/<name>@<alias>")
    .predict(pd.DataFrame({"task": [...], "input": [...]}))`` returns generated strings.
    Returns the registered ``ModelVersion`` (with its aliases).
    """
    import mlflow
    from mlflow import MlflowClient

    checkpoint_dir = Path(checkpoint_dir).resolve()
    _check_checkpoint_dir(checkpoint_dir)
    if mlflow.active_run() is None:
        raise RuntimeError("log_and_register_model needs an active run; call it inside "
                           "tracking.start_run(...).")
    with tempfile.TemporaryDirectory(prefix="mtk-model-") as staging:
        staged = _stage_for_serving(checkpoint_dir, Path(staging))
        info = mlflow.pyfunc.log_model(
            name=name, python_model=str(_PYFUNC_CODE),
            artifacts={_PYFUNC_ARTIFACT_KEY: str(staged)},
            signature=_pyfunc_signature(), pip_requirements=_pip_requirements())
    version = mlflow.register_model(info.model_uri, registered_model_name)
    client = MlflowClient()
    if alias:
        client.set_registered_model_alias(registered_model_name, alias, version.version)
    return client.get_model_version(registered_model_name, version.version)


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
