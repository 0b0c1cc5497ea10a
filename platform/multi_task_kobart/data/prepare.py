"""``prepare_dataset``: seed files -> validated, split, tokenized Parquet shards + manifest.

The output is content-addressed: ``<out_dir>/<key>/`` where ``key`` hashes the source
files' bytes, the tokenizer fingerprint and every setting that changes the shards. Running
again on the same input with the same settings finds the finished folder and reuses it;
a different tokenizer or max length gives a different key, so stale token ids are never
read. ``<out_dir>/LATEST`` names the most recent key so that ``out_dir`` alone is enough to
load from. Folders are written under a temporary name and renamed at the end, so a crashed
run never leaves a half-written dataset that looks complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from multi_task_kobart.data.encodings import DEFAULT_ENCODING, check_encoding
from multi_task_kobart.data.reading import (SPLITS, RawRow, SourceFile, check_row,
                                            discover_sources, read_hub_dataset, read_source)
from multi_task_kobart.data.shards import PARQUET_SCHEMA, tokenize_columns, write_shards
from multi_task_kobart.data.splitting import (SplitStats, assign_valid_split, count_duplicates,
                                              count_leakage, shuffled_order, stable_ids)
from multi_task_kobart.data.validation import (DataError, DataValidationError,
                                               MissingInputError, RowError, reason_kind,
                                               summarize_errors)

FORMAT_VERSION = 1
ON_ERROR_CHOICES = ("fail", "skip")
MANIFEST_NAME = "manifest.json"
REJECTS_NAME = "rejects.jsonl"
LATEST_NAME = "LATEST"
_COLUMNS = ("task", "input", "target", "answers", "split", "source_file", "source_line")


@dataclass
class PreparedDataset:
    """A finished preparation: its folder, its manifest, and whether it was reused."""

    path: Path
    manifest: dict[str, Any]
    reused: bool = False

    @property
    def counts(self) -> dict[str, dict[str, int]]:
        """Rows per split and task."""
        return self.manifest["counts"]

    def summary(self) -> str:
        return format_summary(self.manifest, self.path, self.reused)


@dataclass
class _Collected:
    columns: dict[str, list[Any]]
    errors: list[RowError]
    rejects: list[dict[str, Any]]
    per_file: dict[str, Counter]


def prepare_dataset(inputs: str | Path | Sequence[str | Path], out_dir: str | Path, *,
                    tokenizer: Any = None, max_source_length: int = 128,
                    max_target_length: int = 64, valid_fraction: float = 0.05, seed: int = 0,
                    on_error: str = "fail", dedup: bool = False, rows_per_shard: int = 100_000,
                    encoding: str = DEFAULT_ENCODING, num_proc: int | None = None,
                    progress: bool = False) -> PreparedDataset:
    """Validate, split, tokenize and shard seed-format records (see the module docstring).

    ``inputs``: files and/or folders (JSONL, JSON list, CSV/TSV, Parquet), or a hub dataset
    name. ``tokenizer``: None/"bundled", a path or hub id for ``load_tokenizer``, or a loaded
    tokenizer. ``on_error``: "fail" raises ``DataValidationError`` listing every problem;
    "skip" writes bad rows to ``rejects.jsonl`` and counts them. ``dedup`` drops exact
    repeats within a split (they are always counted). Train rows that have no user valid
    split lose a seeded ``valid_fraction`` to "valid"; a "test" split is never touched.
    ``encoding``: of the text files (JSONL, JSON, CSV/TSV), e.g. "cp949"; it changes what the
    bytes mean, so it is part of the cache key. Problems with the input as a whole (no
    files, a file in another encoding, a bad setting) raise ``DataError``.
    """
    _check_settings(on_error, valid_fraction, max_source_length, max_target_length, rows_per_shard)
    encoding = check_encoding(encoding)
    sources, hub_name = _sources_or_hub(inputs)  # a wrong path is reported before a tokenizer loads
    tok, tok_info = _resolve_tokenizer(tokenizer)
    settings = {"max_source_length": max_source_length, "max_target_length": max_target_length,
                "valid_fraction": valid_fraction, "seed": seed, "on_error": on_error,
                "dedup": dedup, "rows_per_shard": rows_per_shard, "encoding": encoding}
    source_info = _source_info(sources, hub_name)
    key = _cache_key(source_info, tok_info["fingerprint"], settings)
    out_dir = Path(out_dir)
    final = out_dir / key
    if (final / MANIFEST_NAME).is_file():
        _write_latest(out_dir, key)
        return PreparedDataset(final, read_manifest(final), reused=True)
    collected = _collect(sources, hub_name, encoding)
    _check_collected(collected, inputs, on_error)
    columns, split_stats = _split_and_count(collected.columns, valid_fraction, seed, dedup)
    table = tokenize_columns(columns, tok, max_source_length, max_target_length,
                             num_proc=num_proc, progress=progress)
    manifest = {"format_version": FORMAT_VERSION, "key": key,
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "tokenizer": tok_info, "max_source_length": max_source_length,
                "max_target_length": max_target_length, "settings": settings}
    _write_atomically(out_dir, key, table, manifest, collected, source_info, split_stats)
    _write_latest(out_dir, key)
    return PreparedDataset(final, read_manifest(final), reused=False)


def _check_settings(on_error: str, valid_fraction: float, max_source_length: int,
                    max_target_length: int, rows_per_shard: int) -> None:
    if on_error not in ON_ERROR_CHOICES:
        raise DataError(f"on_error={on_error!r} is not valid; allowed: {', '.join(ON_ERROR_CHOICES)}.")
    if not 0.0 <= valid_fraction < 1.0:
        raise DataError(f"valid_fraction={valid_fraction!r} must be in [0, 1).")
    # A source needs room for <s> and </s> around at least one token; a target for one + </s>.
    if max_source_length < 3 or max_target_length < 2:
        raise DataError(f"max_source_length={max_source_length!r} must be >= 3 and "
                        f"max_target_length={max_target_length!r} must be >= 2.")
    if rows_per_shard < 1:
        raise DataError(f"rows_per_shard={rows_per_shard!r} must be >= 1.")


def _resolve_tokenizer(tokenizer: Any) -> tuple[Any, dict[str, Any]]:
    """A loaded tokenizer and its identity (name + fingerprint) for the manifest and cache key."""
    from multi_task_kobart.tokenizer import load_tokenizer, tokenizer_fingerprint, tokenizer_name

    tok = load_tokenizer(None if tokenizer is None else str(tokenizer)) \
        if tokenizer is None or isinstance(tokenizer, (str, Path)) else tokenizer
    info = {"name": tokenizer_name(tok), "fingerprint": tokenizer_fingerprint(tok),
            "vocab_size": len(tok), "pad_token_id": tok.pad_token_id,
            "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}
    return tok, info


def _sources_or_hub(inputs: Any) -> tuple[list[SourceFile], str | None]:
    single = isinstance(inputs, (str, Path))
    if single and not Path(inputs).exists() and _looks_like_hub_name(str(inputs)):
        return [], str(inputs)
    return discover_sources(inputs), None


def _looks_like_hub_name(text: str) -> bool:
    # "owner/name" or "name": no file extension we read, no leading ./ or /.
    return (not text.startswith((".", "/", "~")) and text.count("/") <= 1
            and Path(text).suffix.lower() not in {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".pq"})


def _source_info(sources: list[SourceFile], hub_name: str | None) -> list[dict[str, Any]]:
    """What identifies the input: each file's bytes (sha256), or a hub dataset's name.

    A hub dataset is identified by its name only; prepare into a new ``out_dir`` to pick
    up a new revision of it.
    """
    if hub_name is not None:
        return [{"hub": hub_name}]
    return [{"file": s.name, "sha256": s.sha256(), "format": s.format, "split": s.split}
            for s in sources]


def _cache_key(source_info: list[dict[str, Any]], fingerprint: str, settings: dict[str, Any]) -> str:
    payload = json.dumps({"format_version": FORMAT_VERSION, "sources": source_info,
                          "tokenizer": fingerprint, "settings": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:16]


def _collect(sources: list[SourceFile], hub_name: str | None, encoding: str) -> _Collected:
    """Read every row; valid ones become columns, bad ones errors + rejects."""
    collected = _Collected({name: [] for name in _COLUMNS}, [], [], {})
    if hub_name is not None:
        for split, rows in read_hub_dataset(hub_name).items():
            _add_rows(collected, rows, split, f"{hub_name}:{split}")
    for source in sources:
        _add_rows(collected, read_source(source, encoding), source.split, source.name)
    return collected


def _check_collected(collected: _Collected, inputs: Any, on_error: str) -> None:
    if collected.errors and on_error == "fail":
        raise DataValidationError(collected.errors)
    if not collected.columns["task"]:
        reason = summarize_errors(collected.errors) if collected.errors else "the input is empty"
        raise DataError(f"no valid rows in {inputs!r}; {reason}")


def _add_rows(collected: _Collected, rows: Any, split: str, name: str) -> None:
    """``name`` is the root-relative file name the shards and manifest record (errors use
    the path as the user gave it)."""
    columns = collected.columns
    counter = collected.per_file.setdefault(name, Counter())
    for row in rows:
        problems = check_row(row)
        if problems:
            counter["rejected"] += 1
            collected.errors.extend(problems)
            collected.rejects.append(_reject_record(row, problems))
            continue
        counter["rows"] += 1
        record = row.record
        for column in ("task", "input", "target"):
            columns[column].append(record[column])
        columns["answers"].append(record.get("answers"))
        columns["split"].append(split)
        columns["source_file"].append(name)
        columns["source_line"].append(row.line)


def _reject_record(row: RawRow, problems: list[RowError]) -> dict[str, Any]:
    return {"file": row.file, row.unit: row.line,
            "errors": [{"field": p.field, "reason": p.reason} for p in problems],
            "raw": _printable(row.raw_text())}


def _printable(text: str) -> str:
    """Raw source text with undecodable bytes shown as ``\\xff`` (JSON cannot hold them)."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that did not come from a raw byte
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _split_and_count(columns: dict[str, list[Any]], valid_fraction: float, seed: int,
                     dedup: bool) -> tuple[dict[str, list[Any]], SplitStats]:
    """Assign splits, count duplicates and leakage, drop repeats if asked, order and id rows."""
    stats = SplitStats()
    stats.valid_source = assign_valid_split(columns["task"], columns["input"], columns["split"],
                                            valid_fraction, seed)
    stats.duplicates, repeat = count_duplicates(columns["task"], columns["input"],
                                                columns["target"], columns["split"])
    keep = [i for i in shuffled_order(columns["split"], seed) if not (dedup and repeat[i])]
    stats.duplicates_removed = len(columns["task"]) - len(keep)
    ordered = {name: [values[i] for i in keep] for name, values in columns.items()}
    stats.leakage = count_leakage(ordered["task"], ordered["input"], ordered["split"])
    ordered["id"] = stable_ids(ordered["task"], ordered["input"], ordered["target"])
    return ordered, stats


def _write_atomically(out_dir: Path, key: str, table: Any, manifest: dict[str, Any],
                      collected: _Collected, source_info: list[dict[str, Any]],
                      split_stats: SplitStats) -> None:
    temporary = out_dir / f".tmp-{key}-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    shard_stats = write_shards(table, temporary, manifest["settings"]["rows_per_shard"])
    for info in source_info:
        counter = collected.per_file.get(info.get("file", ""), Counter())
        info.update(rows=counter["rows"], rejected=counter["rejected"])
    manifest.update(_manifest_body(shard_stats, collected, source_info, split_stats))
    if collected.rejects:
        with open(temporary / REJECTS_NAME, "w", encoding="utf-8") as handle:
            for record in collected.rejects:
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    (temporary / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False))
    try:
        os.replace(temporary, out_dir / key)
    except OSError:  # another process finished the same key first: its result is identical
        shutil.rmtree(temporary, ignore_errors=True)


def _manifest_body(shard_stats: dict[str, Any], collected: _Collected,
                   source_info: list[dict[str, Any]], split_stats: SplitStats) -> dict[str, Any]:
    reasons = Counter(reason_kind(error.reason) for error in collected.errors)
    return {
        "counts": {split: {task: info["rows"] for task, info in tasks.items()}
                   for split, tasks in shard_stats.items()},
        "splits": shard_stats,
        "valid_split": split_stats.valid_source,
        "duplicates": split_stats.duplicates,
        "duplicates_removed": split_stats.duplicates_removed,
        "leakage": split_stats.leakage,
        "rejects": {"rows": len(collected.rejects), "problems": len(collected.errors),
                    "by_reason": dict(reasons),
                    "file": REJECTS_NAME if collected.rejects else None},
        "sources": source_info,
        "schema": {f.name: str(f.type) for f in PARQUET_SCHEMA},
    }


def _write_latest(out_dir: Path, key: str) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / LATEST_NAME).write_text(key + "\n")


def resolve_prepared_dir(path: str | Path) -> Path:
    """A prepared dataset folder from itself or from the ``out_dir`` it was written into."""
    path = Path(path)
    if (path / MANIFEST_NAME).is_file():
        return path
    latest = path / LATEST_NAME
    if latest.is_file() and (path / latest.read_text().strip() / MANIFEST_NAME).is_file():
        return path / latest.read_text().strip()
    raise MissingInputError(f"{str(path)!r} is not a prepared dataset: it has neither "
                            f"{MANIFEST_NAME} nor a {LATEST_NAME} file naming one; run "
                            f"jobs/prepare_data.py (or prepare_dataset) first.")


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a prepared dataset (``path`` as for ``resolve_prepared_dir``)."""
    return json.loads((resolve_prepared_dir(path) / MANIFEST_NAME).read_text())


def format_summary(manifest: dict[str, Any], path: Path | str, reused: bool = False) -> str:
    """A readable table: rows, truncation and duplicates per split and task, then totals."""
    tok = manifest["tokenizer"]
    lines = [f"{'Reused' if reused else 'Prepared'} {path}",
             f"tokenizer {tok['name']} (sha256 {tok['fingerprint'][:12]}), "
             f"max lengths: source {manifest['max_source_length']}, target {manifest['max_target_length']}",
             f"{'split':<6} {'task':<24} {'rows':>8} {'trunc_in':>9} {'trunc_tgt':>10} {'dups':>6}"]
    for split in SPLITS:
        for task, info in manifest["splits"].get(split, {}).items():
            dups = manifest["duplicates"].get(split, {}).get(task, 0)
            lines.append(f"{split:<6} {task:<24} {info['rows']:>8} {info['truncated_inputs']:>9} "
                         f"{info['truncated_targets']:>10} {dups:>6}")
    leakage = {name: sum(v.values()) for name, v in manifest["leakage"].items()}
    rejects = manifest["rejects"]
    lines.append(f"valid split per task: {manifest['valid_split']}")
    lines.append(f"leakage (inputs also in train): valid {leakage.get('valid_vs_train', 0)}, "
                 f"test {leakage.get('test_vs_train', 0)}; duplicates removed: "
                 f"{manifest['duplicates_removed']}")
    lines.append(f"rejected rows: {rejects['rows']} ({rejects['problems']} problems"
                 + (f", see {Path(path) / rejects['file']})" if rejects["file"] else ")"))
    return "\n".join(lines)


def write_bundled_corpus(cache_dir: str | Path, seed: int = 0) -> Path:
    """Write the bundled corpus (train.jsonl + held-out test.jsonl) under ``cache_dir``.

    It is regenerated on every call (a few seconds at most) rather than trusted from disk:
    the shards are content-addressed, so identical files reuse the prepared dataset anyway.
    Files are written aside and renamed into place, so a concurrent reader (parallel Tune
    trials preparing the same data) never sees a half-written file.
    """
    import tempfile

    from multi_task_kobart.data.corpus import write_corpus

    folder = Path(cache_dir) / f"bundled-seed{seed}"
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent, prefix=".corpus-") as scratch:
        for path in write_corpus(scratch, seed=seed).values():
            os.replace(path, folder / Path(path).name)
    return folder


def prepare_from_config(data_cfg: Any, seed: int = 0, **kwargs: Any) -> PreparedDataset:
    """``prepare_dataset`` driven by a ``DataConfig`` (source "bundled" = the bundled corpus)."""
    source, encoding = data_cfg.source, data_cfg.encoding
    if source == "bundled":  # written here, in UTF-8, whatever the user's files are in
        source = write_bundled_corpus(Path(data_cfg.prepared_dir) / "sources", seed=seed)
        encoding = DEFAULT_ENCODING
    return prepare_dataset(source, data_cfg.prepared_dir, tokenizer=data_cfg.tokenizer,
                           max_source_length=data_cfg.max_source_length,
                           max_target_length=data_cfg.max_target_length,
                           valid_fraction=data_cfg.valid_fraction, encoding=encoding,
                           seed=seed, **kwargs)
