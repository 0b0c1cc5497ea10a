"""Both benchmarks at their smoke size, run as a user runs them: the outputs, not the speed.

Each result file must say where and when it was measured, hold positive numbers, and its
ratios must be the ones its own reported numbers give.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import statistics
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def run_script(name: str, *args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, str(BENCHMARKS / name), *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{name} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def check_meta(meta: dict) -> None:
    if (ROOT / ".git").exists():
        assert re.fullmatch(r"[0-9a-f]{40}", meta["git_commit"]), meta["git_commit"]
        assert isinstance(meta["git_dirty"], bool)
    else:  # an exported tree: nothing to record, and the file says so
        assert meta["git_commit"] is None
    assert dt.datetime.fromisoformat(meta["date"]).tzinfo is not None
    assert isinstance(meta["cpu_model"], str) and meta["cpu_model"].strip()
    assert isinstance(meta["cpu_cores"], int) and meta["cpu_cores"] >= 1
    for key in ("load_average_start", "load_average_end"):
        assert len(meta[key]) == 3 and all(x >= 0 for x in meta[key])


def check_spread(spread: dict) -> None:
    assert 0 < spread["min"] <= spread["median"] <= spread["max"], spread


def test_train_throughput_quick_run(tmp_path: Path):
    out = tmp_path / "train.json"
    done = run_script("train_throughput.py", "--quick", "--out", str(out))
    report = json.loads(out.read_text())
    check_meta(report["meta"])
    assert report["dims"] == "tiny" and report["rounds"] == 1 and report["threads"] == 1

    sides = report["sides"]
    assert set(sides) == {"ours", "hf_defaults", "hf_group_by_length"}
    peak, cpu_peak = report["matmul_peak_gflops"], report["matmul_peak_gflops_per_cpu_s"]
    for spread in (peak, cpu_peak):
        check_spread(spread)
        assert spread["median"] == pytest.approx(statistics.median(spread["readings"]))
    for name, side in sides.items():
        for key in ("seconds", "tokens_per_s", "gflops_per_s", "mfu", "cpu_seconds",
                    "tokens_per_cpu_s", "gflops_per_cpu_s", "mfu_cpu_time"):
            check_spread(side[key])
        assert 0 <= side["padding_fraction"]["median"] < 1
        assert side["mfu"]["median"] == pytest.approx(side["gflops_per_s"]["median"] / peak["median"])
        assert side["mfu_cpu_time"]["median"] == pytest.approx(
            side["gflops_per_cpu_s"]["median"] / cpu_peak["median"])
        assert len(side["passes"]) == report["rounds"]
        for one in side["passes"]:
            assert one["tokens_per_s"] == pytest.approx(side["real_tokens"] / one["seconds"])
            assert one["gflops_per_s"] == pytest.approx(side["useful_flops"] / one["seconds"] / 1e9)
            assert one["tokens_per_cpu_s"] == pytest.approx(side["real_tokens"] / one["cpu_seconds"])
            assert one["padded_tokens"] >= side["real_tokens"] > 0
            assert math.isfinite(one["mean_loss"]) and one["mean_loss"] > 0
    # One pass over the same rows on every side: the same real tokens and useful FLOPs.
    assert len({side["real_tokens"] for side in sides.values()}) == 1
    assert len({side["useful_flops"] for side in sides.values()}) == 1
    # Trainer: one step per batch_size rows; ours: per task, so at least as many.
    hf_steps = math.ceil(report["rows"] / report["batch_size"])
    assert sides["hf_defaults"]["steps"] == sides["hf_group_by_length"]["steps"] == hf_steps
    assert sides["ours"]["steps"] >= hf_steps

    for baseline in ("hf_defaults", "hf_group_by_length"):
        ratio = report["ratios"][f"ours_vs_{baseline}"]
        assert ratio["tokens_per_s"] == pytest.approx(
            sides["ours"]["tokens_per_s"]["median"] / sides[baseline]["tokens_per_s"]["median"])
        assert ratio["gflops_per_s"] == pytest.approx(
            sides["ours"]["gflops_per_s"]["median"] / sides[baseline]["gflops_per_s"]["median"])
        assert ratio["per_round"] == pytest.approx(
            [b["seconds"] / o["seconds"] for o, b in zip(sides["ours"]["passes"], sides[baseline]["passes"])])
        assert ratio["tokens_per_cpu_s"] == pytest.approx(
            sides["ours"]["tokens_per_cpu_s"]["median"] / sides[baseline]["tokens_per_cpu_s"]["median"])
        assert f"{ratio['tokens_per_s']:.2f}x" in done.stdout

    hf = report["optimizer"]["hf"]
    assert hf["hf_defaults"] == {"optimizer": "AdamW", "fused": True, "sampler": "RandomSampler"}
    assert hf["hf_group_by_length"] == {"optimizer": "AdamW", "fused": True,
                                        "sampler": "LengthGroupedSampler"}


def test_prepare_throughput_quick_run(tmp_path: Path):
    out = tmp_path / "prepare.json"
    run_script("prepare_throughput.py", "--quick", "--out", str(out))
    saved = json.loads(out.read_text())
    assert len(saved) == 1 and set(saved) <= {"realdata", "bundled"}
    result = next(iter(saved.values()))
    check_meta(result["meta"])
    assert result["repeats"] == 1 and 0 < result["rows"] <= 400
    for side in ("ours", "naive"):
        check_spread(result[side]["seconds"])
        assert result[side]["rows_per_s"] == pytest.approx(result["rows"] / result[side]["seconds"]["median"])
        assert result[side]["cpu_seconds"] > 0
    assert result["ratio"] == pytest.approx(result["ours"]["rows_per_s"] / result["naive"]["rows_per_s"])
    assert result["cpu_ratio"] == pytest.approx(result["naive"]["cpu_seconds"] / result["ours"]["cpu_seconds"])
    assert result["cache_hit_seconds"] > 0


def test_a_pass_that_skips_or_repeats_a_row_is_rejected(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import train_throughput as bench

    from multi_task_kobart.data.batching import collate
    from multi_task_kobart.model import MultiTaskKoBARTConfig

    cfg = MultiTaskKoBARTConfig.tiny(100)
    rows = [{"task": "qa_generation", "input_ids": [0, 7, 8, 1], "labels": [9, 1]},
            {"task": "qa_generation", "input_ids": [0, 5, 1], "labels": [6, 6, 1]},
            {"task": "qa_generation", "input_ids": [0, 4, 1], "labels": [1]}]

    def ledger_of(*batches: list[int]) -> "bench.BatchLedger":
        ledger = bench.BatchLedger(cfg)
        for indices in batches:
            ledger.add(collate([rows[i] for i in indices]))
        return ledger

    full = ledger_of([0, 1], [2])
    bench.check_full_pass("x", full, rows)
    assert full.rows == Counter(bench.row_key(r) for r in rows)
    assert full.real == 4 + 3 + 3 + 2 + 3 + 1 and full.padded == 2 * (4 + 3) + 1 * (3 + 1)
    with pytest.raises(RuntimeError, match="1 missing, 0 extra"):
        bench.check_full_pass("x", ledger_of([0, 1]), rows)
    with pytest.raises(RuntimeError, match="0 missing, 1 extra"):
        bench.check_full_pass("x", ledger_of([0, 1], [2, 2]), rows)
    # A batch's FLOPs are the sum of its rows' FLOPs: padding adds nothing.
    assert full.flops == sum(ledger_of([i]).flops for i in range(3))


@pytest.mark.slow  # starts Ray Serve with both topologies (~2 min on 2 shared cores)
def test_serve_throughput_quick_run(tmp_path: Path):
    out = tmp_path / "serve.json"
    run_script("serve_throughput.py", "--quick", "--out", str(out))
    report = json.loads(out.read_text())
    check_meta(report["meta"])
    assert report["dims"] == "tiny" and report["clients"] == [1, 2]
    gen = report["decoding"]
    assert gen["min_new_tokens"] == gen["max_new_tokens"] and gen["num_beams"] == 1 and gen["do_sample"] is False

    assert {(c["load"], c["clients"]) for c in report["cells"]} == {(l, n) for l in ("mixed", "single") for n in (1, 2)}
    for cell in report["cells"]:
        sides = cell["sides"]
        assert set(sides) == {"naive", "colocated", "fanout", "ceiling"}
        for side in sides.values():
            assert side["errors"] == 0 and side["completed"] == side["asked"] == cell["requests"]
            assert side["rps"] > 0 and 0 < side["p50_ms"] <= side["p99_ms"]
            assert math.isclose(side["rps"], side["completed"] / side["wall_s"], rel_tol=1e-9)
            check_spread(side["latency_ms"])
        for name, value in cell["ratios"].items():
            if name.endswith("_p50_vs_naive"):
                side = name.removesuffix("_p50_vs_naive")
                expected = sides[side]["p50_ms"] / sides["naive"]["p50_ms"]
            else:
                side, base = name.split("_vs_")
                expected = sides[side]["rps"] / sides[base]["rps"]
            assert math.isclose(value, expected, rel_tol=1e-9), name
        assert {"colocated_vs_naive", "colocated_vs_ceiling", "fanout_vs_naive", "fanout_vs_ceiling"} <= set(cell["ratios"])

    four = report["four_tasks"]
    for side in ("colocated", "fanout"):
        entry = four[side]
        assert math.isclose(entry["ratio_one_vs_four_sequential"],
                            entry["one_request_ms"]["median"] / entry["four_sequential_ms"]["median"], rel_tol=1e-9)
        assert {"encode", "decode", "total"} <= set(entry["one_request_stages_ms"])
    mem = report["memory"]
    ray_roles = mem["pss_mib"]["ray"]
    assert mem["naive_server_mib"] > 0 and ray_roles["ray: ServeController"] > 0 and ray_roles["ray: ProxyActor"] > 0
    assert any(k.startswith("replica fanout:Decoder_") for k in ray_roles)
    assert math.isclose(mem["fanout_vs_naive"], mem["fanout_model_replicas_mib"] / mem["naive_server_mib"], rel_tol=1e-9)
