"""Serving: the Ray Serve application and the MLflow pyfunc wrapper.

* ``app``: ``build_app(args: ServeArgs) -> Application``, the typed builder that ``serve/config.yaml``
  names (topology ``fanout`` or ``colocated``, CPU/GPU shares, batching, queues, limits, API key);
* ``ingress``: the FastAPI ingress (``/v1/generate``, ``/v1/pipeline``, ``/v1/tasks``, ``/healthz``,
  the playground at ``/``), where requests are validated and tokenized;
* ``deployments``: the ``Encoder``, ``Decoder`` (one per task) and ``Colocated`` deployments;
* ``runtime``: their Ray-free core (partial checkpoint loading, batched encode and decode);
* ``schemas``: the HTTP request/response models and the configurable ``Limits``;
* ``playground.html``: the page served at ``/``;
* ``mlflow_pyfunc``: the registered pyfunc model.

``PYFUNC_MODEL_PATH`` is the file that ``tracking.log_and_register_model`` logs as "model from
code". It is a path, not an import: importing ``mlflow_pyfunc`` runs MLflow's ``set_model``.
"""

from __future__ import annotations

from pathlib import Path

#: The MLflow pyfunc model file (``serving/mlflow_pyfunc.py``) to pass as ``python_model``.
PYFUNC_MODEL_PATH: Path = Path(__file__).resolve().parent / "mlflow_pyfunc.py"

__all__ = ["PYFUNC_MODEL_PATH"]
