"""Shared fixtures: paths to ../shared fixtures (skipped cleanly when absent) and one Ray per session."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("MTK_SHARED_DIR", ROOT.parent / "shared"))
KOBART_TOKENIZER_JSON = SHARED / "kobart-tokenizer" / "tokenizer.json"
REALDATA_DIR = SHARED / "realdata"

# Tests never reach a model hub; fail fast instead of waiting on network time-outs.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def kobart_tokenizer_json() -> Path:
    """The real KoBART tokenizer.json from ../shared (skip when it is not there)."""
    if not KOBART_TOKENIZER_JSON.is_file():
        pytest.skip(f"{KOBART_TOKENIZER_JSON} not present (../shared is optional)")
    return KOBART_TOKENIZER_JSON


@pytest.fixture(scope="session")
def realdata_dir() -> Path:
    """Folder of real Korean seed-format JSONL files from ../shared (skip when absent)."""
    if not (REALDATA_DIR / "style_transfer.jsonl").is_file():
        pytest.skip(f"{REALDATA_DIR} not present (../shared is optional)")
    return REALDATA_DIR


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}})
    yield ray
    ray.shutdown()
