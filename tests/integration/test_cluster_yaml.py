"""cluster.yaml is a valid Ray cluster launcher config for the GPU cluster the design describes.

Validated with Ray's own schema check (``ray/autoscaler/ray-schema.json`` via ``validate_config``)
after ``prepare_config`` merges the AWS defaults, exactly as ``ray up`` does before launching.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_passes_ray_launcher_validation(cluster: dict) -> None:
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(cluster)
    prepared = prepare_config(cluster)
    validate_config(prepared)
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_provides_eight_gpus_on_workers(cluster: dict) -> None:
    gpus_per_instance = {"g5.12xlarge": 4, "g5.48xlarge": 8, "p4d.24xlarge": 8, "p5.48xlarge": 8}
    total = 0
    for name, node_type in cluster["available_node_types"].items():
        if name == cluster["head_node_type"]:
            assert node_type["node_config"]["InstanceType"] not in gpus_per_instance
            continue
        per_node = gpus_per_instance[node_type["node_config"]["InstanceType"]]
        total += per_node * node_type["min_workers"]
    assert total == 8
    assert cluster["max_workers"] >= sum(
        t.get("min_workers", 0) for t in cluster["available_node_types"].values())


def test_setup_installs_torch_before_the_project(cluster: dict) -> None:
    commands = cluster["setup_commands"]
    torch_at = next(i for i, c in enumerate(commands) if "torch==2.13.0" in c)
    project_at = next(i for i, c in enumerate(commands) if "install --quiet -e ." in c)
    assert torch_at < project_at
    assert "~/multi-task-kobart" in cluster["file_mounts"]
    assert any(".venv" in pattern for pattern in cluster["rsync_exclude"])


def test_head_starts_ray_with_auth_and_a_local_mlflow_server(cluster: dict) -> None:
    head = " ".join(cluster["head_start_ray_commands"])
    assert "ray start --head" in head and "RAY_AUTH_MODE=token" in head
    assert "--dashboard-host=127.0.0.1" in head
    assert "mlflow server" in head and "MLFLOW_BIND:-127.0.0.1" in head
    workers = " ".join(cluster["worker_start_ray_commands"])
    assert "--address=$RAY_HEAD_IP:6379" in workers and "RAY_AUTH_MODE=token" in workers
    assert "~/.ray/auth_token" in cluster["file_mounts"]  # every node gets the token
