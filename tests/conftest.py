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
def spec_md() -> Path:
    """../shared/SPEC.md, the user's contract (skip when absent)."""
    path = SHARED / "SPEC.md"
    if not path.is_file():
        pytest.skip(f"{path} not present (../shared is optional)")
    return path


@pytest.fixture(scope="session")
def prepared_tiny(tmp_path_factory) -> Path:
    """The bundled corpus tokenized with the bundled tokenizer, as configs/tiny.yaml does, once."""
    from multi_task_kobart.config import load_config
    from multi_task_kobart.data.prepare import prepare_from_config

    out = tmp_path_factory.mktemp("prepared")
    cfg = load_config(ROOT / "configs" / "tiny.yaml", [f"data.prepared_dir={out}"])
    prepare_from_config(cfg.data, seed=cfg.seed)
    return out


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (starting Ray costs seconds)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}})
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny random MultiTaskKoBART checkpoint in the training format, shared by the session.

    Weights + config (save_pretrained), the bundled tokenizer, a train_config.json and an
    optimizer.pt: what a training checkpoint holds. Seeded, so its outputs are reproducible.
    The special tokens' embedding rows are zero, so the tied LM head gives them logit 0: the
    random model then writes words (which decoding settings visibly change) instead of stopping
    at once with an empty answer.
    """
    import json

    import torch

    from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig
    from multi_task_kobart.tokenizer import KOBART_SPECIAL_IDS, load_tokenizer
    from multi_task_kobart.training.checkpoint import OPTIMIZER, TRAIN_CONFIG

    torch.manual_seed(0)
    tokenizer = load_tokenizer()
    model = MultiTaskKoBART(MultiTaskKoBARTConfig.tiny(vocab_size=len(tokenizer)))
    with torch.no_grad():
        model.shared.weight[list(KOBART_SPECIAL_IDS.values())] = 0.0
    out = tmp_path_factory.mktemp("tiny-ckpt") / "checkpoint_000003"
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / TRAIN_CONFIG).write_text(json.dumps({"model": {"preset": "tiny"}}))
    torch.save({"state": {}}, out / OPTIMIZER)
    return out


@pytest.fixture(scope="session")
def demo_module():
    """``jobs/demo.py`` imported as a module (jobs/ is a folder of scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("mtk_demo_job", ROOT / "jobs" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
