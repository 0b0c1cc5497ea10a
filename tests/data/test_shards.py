"""Prepared shards: schema, token round-trip, manifest counts, splits, caching, the CLI."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from multi_task_kobart.data.prepare import prepare_dataset, resolve_prepared_dir
from multi_task_kobart.data.shards import PARQUET_SCHEMA
from multi_task_kobart.tasks import TASKS
from multi_task_kobart.tokenizer import encode_sources, encode_targets

ROOT = Path(__file__).resolve().parents[2]


def _all_rows(prepared_path: Path) -> dict[tuple[str, str], list[dict]]:
    rows = {}
    for path in sorted(prepared_path.glob("*/*/part-*.parquet")):
        table = pq.read_table(path)
        assert table.schema.remove_metadata().equals(PARQUET_SCHEMA)
        rows[(path.parent.parent.name, path.parent.name)] = table.to_pylist()
    return rows


def test_shards_round_trip_to_the_source_text(tmp_path, tokenizer, make_rows, write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=6))
    prepared = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.2)
    rows = _all_rows(prepared.path)
    flat = [row for part in rows.values() for row in part]
    assert len(flat) == 24 and len({row["id"] for row in flat}) == 24
    for row in flat:
        body = tokenizer(row["input"], add_special_tokens=False)["input_ids"]
        assert row["input_ids"] == [0] + body + [1]
        assert row["labels"] == tokenizer(row["target"], add_special_tokens=False)["input_ids"] + [1]
        assert tokenizer.decode(row["input_ids"], skip_special_tokens=True) == tokenizer.decode(body)
        assert (row["source_len"], row["target_len"]) == (len(row["input_ids"]), len(row["labels"]))
        assert row["source_file"] == "in.jsonl" and row["source_line"] >= 1
        assert row["answers"] == (None if row["task"] != "qa_generation" else
                                  [f"답 {row['source_line'] - 19}", f"정답 {row['source_line'] - 19}"])


def test_manifest_counts_match_the_shards(tmp_path, tokenizer, make_rows, write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=10))
    prepared = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.2)
    manifest = prepared.manifest
    rows = _all_rows(prepared.path)
    assert manifest["counts"] == {split: {task: len(rows[(split, task)]) for task in TASKS}
                                  for split in ("train", "valid")}
    assert all(n == 2 for n in manifest["counts"]["valid"].values())
    assert manifest["tokenizer"]["fingerprint"] and manifest["tokenizer"]["name"]
    assert manifest["max_source_length"] == 128 and manifest["max_target_length"] == 64
    assert manifest["sources"] == [{"file": "in.jsonl", "sha256": manifest["sources"][0]["sha256"],
                                    "format": "jsonl", "split": "train", "rows": 40,
                                    "rejected": 0}]
    assert manifest["valid_split"] == {task: "seeded" for task in TASKS}
    info = manifest["splits"]["train"]["style_transfer"]
    assert info["files"] == ["train/style_transfer/part-00000.parquet"]
    assert info["source_tokens"] == sum(r["source_len"] for r in rows[("train", "style_transfer")])


def test_truncation_is_counted_and_keeps_eos(tmp_path, tokenizer, make_rows, write_jsonl):
    rows = make_rows(per_task=4)
    rows[0]["input"] = "아주 긴 입력 문장 " * 40
    rows[1]["target"] = "아주 긴 출력 문장 " * 40
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    prepared = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.0,
                               max_source_length=16, max_target_length=8)
    expected_in = sum(encode_sources(tokenizer, [r["input"]], 16)[1][0] for r in rows)
    expected_tgt = sum(encode_targets(tokenizer, [r["target"]], 8)[1][0] for r in rows)
    splits = prepared.manifest["splits"]["train"]
    assert sum(i["truncated_inputs"] for i in splits.values()) == expected_in >= 1
    assert sum(i["truncated_targets"] for i in splits.values()) == expected_tgt >= 1
    for row in _all_rows(prepared.path)[("train", "style_transfer")]:
        assert len(row["input_ids"]) <= 16 and row["input_ids"][-1] == 1
        assert len(row["labels"]) <= 8 and row["labels"][-1] == 1


def test_held_out_test_stays_out_and_user_valid_is_kept(tmp_path, tokenizer, make_rows, write_jsonl):
    write_jsonl(tmp_path / "in" / "train.jsonl", make_rows(per_task=10))
    write_jsonl(tmp_path / "in" / "test.jsonl", make_rows(per_task=3, prefix="시험 "))
    write_jsonl(tmp_path / "in" / "style_dev.jsonl",
                [r for r in make_rows(per_task=2, prefix="검증 ") if r["task"] == "style_transfer"])
    prepared = prepare_dataset(tmp_path / "in", tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.1)
    counts, rows = prepared.manifest["counts"], _all_rows(prepared.path)
    assert counts["test"] == {task: 3 for task in TASKS}
    assert all(r["source_file"] == "test.jsonl" for t in TASKS for r in rows[("test", t)])
    assert counts["valid"]["style_transfer"] == 2  # the user's dev file, nothing carved
    assert counts["train"]["style_transfer"] == 10
    assert counts["valid"]["qa_generation"] == 1 and counts["train"]["qa_generation"] == 9
    assert prepared.manifest["valid_split"]["style_transfer"] == "user"
    assert prepared.manifest["leakage"] == {"valid_vs_train": {}, "test_vs_train": {}}


def test_duplicates_and_leakage_are_counted_and_dedup_drops_repeats(tmp_path, tokenizer, make_rows,
                                                                    write_jsonl):
    train = make_rows(per_task=3)
    write_jsonl(tmp_path / "in" / "train.jsonl", train + train[:2])  # two exact repeats
    write_jsonl(tmp_path / "in" / "test.jsonl", [train[0], {**train[5], "target": "다른 답"}])
    kwargs = dict(tokenizer=tokenizer, valid_fraction=0.0)
    manifest = prepare_dataset(tmp_path / "in", tmp_path / "out", **kwargs).manifest
    assert manifest["duplicates"] == {"train": {"style_transfer": 2}}
    assert manifest["leakage"]["test_vs_train"] == {"style_transfer": 1, "dialogue_summarization": 1}
    assert manifest["counts"]["train"]["style_transfer"] == 5 and manifest["duplicates_removed"] == 0
    deduped = prepare_dataset(tmp_path / "in", tmp_path / "out", dedup=True, **kwargs).manifest
    assert deduped["counts"]["train"]["style_transfer"] == 3 and deduped["duplicates_removed"] == 2


def test_seeded_split_is_deterministic_and_groups_equal_inputs(tmp_path, tokenizer, make_rows,
                                                              write_jsonl):
    rows = make_rows(per_task=20)
    rows += [{**r, "target": r["target"] + " 또"} for r in rows[:20]]  # same inputs, new targets
    source = write_jsonl(tmp_path / "in.jsonl", rows)
    ids = []
    for out in ("a", "b"):
        prepared = prepare_dataset(source, tmp_path / out, tokenizer=tokenizer, valid_fraction=0.25)
        valid = _all_rows(prepared.path)[("valid", "style_transfer")]
        ids.append(sorted(r["id"] for r in valid))
        assert prepared.manifest["leakage"]["valid_vs_train"] == {}
    assert ids[0] == ids[1] and len(ids[0]) == 10
    other = prepare_dataset(source, tmp_path / "c", tokenizer=tokenizer, valid_fraction=0.25, seed=1)
    assert sorted(r["id"] for r in _all_rows(other.path)[("valid", "style_transfer")]) != ids[0]


def test_rerun_reuses_shards_and_a_changed_tokenizer_invalidates_them(tmp_path, tokenizer, make_rows,
                                                                      write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=3))
    first = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer)
    mtime = (first.path / "manifest.json").stat().st_mtime_ns
    again = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer)
    assert again.reused and again.path == first.path
    assert (again.path / "manifest.json").stat().st_mtime_ns == mtime
    changed = copy.deepcopy(tokenizer)
    changed.add_tokens(["완전히새로운토큰"])
    other = prepare_dataset(source, tmp_path / "out", tokenizer=changed)
    assert not other.reused and other.path != first.path
    assert other.manifest["tokenizer"]["fingerprint"] != first.manifest["tokenizer"]["fingerprint"]
    longer = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, max_source_length=64)
    assert longer.path not in (first.path, other.path)
    assert resolve_prepared_dir(tmp_path / "out") == longer.path  # LATEST follows the last run
    source.write_text(source.read_text() + json.dumps(make_rows(1, "새 ")[0], ensure_ascii=False) + "\n")
    assert prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer).path != first.path


def test_rows_per_shard_splits_large_parts(tmp_path, tokenizer, make_rows, write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=5))
    prepared = prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, valid_fraction=0.0,
                               rows_per_shard=2)
    files = prepared.manifest["splits"]["train"]["qa_generation"]["files"]
    assert len(files) == 3
    assert sum(pq.read_metadata(prepared.path / f).num_rows for f in files) == 5


def _load_job():
    spec = importlib.util.spec_from_file_location("prepare_data_job", ROOT / "jobs" / "prepare_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_job_prints_summary_and_fails_with_locations(tmp_path, tokenizer, make_rows, write_jsonl, capsys):
    tokenizer_dir = tmp_path / "tok"
    tokenizer.save_pretrained(tokenizer_dir)
    job = _load_job()
    good = write_jsonl(tmp_path / "good.jsonl", make_rows(per_task=3))
    assert job.main(["--input", str(good), "--out", str(tmp_path / "out"),
                     "--tokenizer", str(tokenizer_dir)]) == 0
    out = capsys.readouterr().out
    assert "Prepared" in out and "qa_generation" in out and "rejected rows: 0" in out
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"task": "style_transfer", "input": "", "target": "x"}])
    assert job.main(["--input", str(bad), "--out", str(tmp_path / "out"),
                     "--tokenizer", str(tokenizer_dir)]) == 2
    assert "bad.jsonl:1: field 'input': empty string" in capsys.readouterr().err


def test_bad_settings_are_rejected(tmp_path, tokenizer, make_rows, write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=1))
    with pytest.raises(ValueError, match="on_error='ignore' is not valid"):
        prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, on_error="ignore")
    with pytest.raises(ValueError, match="valid_fraction=1.5"):
        prepare_dataset(source, tmp_path / "out", tokenizer=tokenizer, valid_fraction=1.5)
    with pytest.raises(FileNotFoundError, match="not a prepared dataset"):
        resolve_prepared_dir(tmp_path)


def test_parallel_tokenization_gives_identical_shards(tmp_path, tokenizer, make_rows, write_jsonl):
    source = write_jsonl(tmp_path / "in.jsonl", make_rows(per_task=5))
    one = prepare_dataset(source, tmp_path / "one", tokenizer=tokenizer, num_proc=1)
    two = prepare_dataset(source, tmp_path / "two", tokenizer=tokenizer, num_proc=2)
    assert one.path.name == two.path.name  # num_proc is not part of the content key
    assert _all_rows(one.path) == _all_rows(two.path)


def test_job_default_prepares_the_bundled_corpus_with_test_held_out(tmp_path, capsys):
    from multi_task_kobart.data.corpus import generate_corpus
    from multi_task_kobart.tokenizer import BUNDLED_TOKENIZER_DIR

    if not (BUNDLED_TOKENIZER_DIR / "tokenizer.json").is_file():
        pytest.skip("the bundled tokenizer has not been built")
    assert _load_job().main(["--out", str(tmp_path / "prepared")]) == 0
    manifest = json.loads((resolve_prepared_dir(tmp_path / "prepared") / "manifest.json").read_text())
    corpus = generate_corpus(seed=0)
    expected_test = {task: sum(r["task"] == task for r in corpus["test"]) for task in TASKS}
    assert manifest["counts"]["test"] == expected_test
    assert {t: manifest["counts"]["train"][t] + manifest["counts"]["valid"][t] for t in TASKS} == \
        {task: sum(r["task"] == task for r in corpus["train"]) for task in TASKS}
    assert manifest["leakage"]["test_vs_train"] == {} and manifest["rejects"]["rows"] == 0
    assert "test   qa_generation" in capsys.readouterr().out
