"""Relative config paths resolve against a root the user chose, never inside Ray's temporary
copy of the working dir (``ray job submit --working-dir .``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from multi_task_kobart.config import load_config
from multi_task_kobart.training.driver import ROOT_ENV, resolve_paths


@pytest.fixture
def ray_copy(tmp_path, monkeypatch) -> Path:
    """A cwd shaped like the folder Ray unpacks a --working-dir upload into."""
    copy = tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_abc"
    copy.mkdir(parents=True)
    monkeypatch.chdir(copy)
    monkeypatch.delenv(ROOT_ENV, raising=False)
    return copy


def _cfg():
    return load_config(None, ["tracking.enabled=false"])


def test_relative_paths_resolve_against_the_current_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(ROOT_ENV, raising=False)
    cfg = resolve_paths(_cfg())
    assert cfg.run.storage_path == str(tmp_path / "runs")
    assert cfg.data.prepared_dir == str(tmp_path / "data" / "prepared" / "tiny")
    assert cfg.data.tokenizer == "bundled"  # not a path: untouched


def test_inside_rays_working_dir_copy_a_relative_path_is_refused(ray_copy):
    with pytest.raises(ValueError) as error:
        resolve_paths(_cfg())
    message = str(error.value)
    assert "data.prepared_dir='data/prepared/tiny' is relative" in message
    assert "--root" in message and ROOT_ENV in message and str(ray_copy) in message


def test_a_root_or_the_environment_variable_makes_it_stable(ray_copy, tmp_path, monkeypatch):
    root = tmp_path / "project"
    cfg = resolve_paths(_cfg(), root)
    assert cfg.run.storage_path == str(root / "runs")
    assert cfg.data.prepared_dir == str(root / "data" / "prepared" / "tiny")
    monkeypatch.setenv(ROOT_ENV, str(root))
    assert resolve_paths(_cfg()).run.storage_path == str(root / "runs")


def test_absolute_paths_and_uris_need_no_root(ray_copy, tmp_path):
    cfg = resolve_paths(load_config(None, ["tracking.enabled=false", f"data.prepared_dir={tmp_path / 'p'}",
                                           "run.storage_path=s3://bucket/runs"]))
    assert cfg.data.prepared_dir == str(tmp_path / "p")
    assert cfg.run.storage_path == "s3://bucket/runs"
