"""Serving: the MLflow pyfunc wrapper today, the Ray Serve deployments next.

``PYFUNC_MODEL_PATH`` is the file that ``tracking.log_and_register_model`` logs as "model from
code". It is a path, not an import: importing ``mlflow_pyfunc`` runs MLflow's ``set_model``.
"""

from __future__ import annotations

from pathlib import Path

#: The MLflow pyfunc model file (``serving/mlflow_pyfunc.py``) to pass as ``python_model``.
PYFUNC_MODEL_PATH: Path = Path(__file__).resolve().parent / "mlflow_pyfunc.py"

__all__ = ["PYFUNC_MODEL_PATH"]
