"""Session fixtures for the Ray-based training tests: the bundled corpus, prepared once."""

from __future__ import annotations

from pathlib import Path

import pytest

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory) -> Path:
    """The bundled corpus tokenized with the bundled tokenizer, as configs/tiny.yaml does."""
    from multi_task_kobart.config import load_config
    from multi_task_kobart.data.prepare import prepare_from_config

    out = tmp_path_factory.mktemp("prepared")
    cfg = load_config(CONFIGS / "tiny.yaml", [f"data.prepared_dir={out}"])
    prepare_from_config(cfg.data, seed=cfg.seed)
    return out


@pytest.fixture
def tiny_overrides(tmp_path, prepared_tiny):
    """Overrides that keep a run's files (Ray storage, MLflow store) inside ``tmp_path``."""
    return [f"data.prepared_dir={prepared_tiny}", f"run.storage_path={tmp_path / 'runs'}",
            f"tracking.tracking_uri={tmp_path / 'mlflow'}"]
