"""Fixtures for the Ray-based training tests (the prepared corpus comes from tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture
def tiny_overrides(tmp_path, prepared_tiny):
    """Overrides that keep a run's files (Ray storage, MLflow store) inside ``tmp_path``."""
    return [f"data.prepared_dir={prepared_tiny}", f"run.storage_path={tmp_path / 'runs'}",
            f"tracking.tracking_uri={tmp_path / 'mlflow'}"]
