"""The evaluator and the evaluation job on a tiny trained checkpoint, with a real MLflow store."""

from __future__ import annotations

import json
import math

import pytest
import torch

from multi_task_kobart.evaluation import metrics
from multi_task_kobart.evaluation.evaluator import BERTSCORE_NOT_CONFIGURED, TASK_METRICS, evaluate_model
from multi_task_kobart.evaluation.examples import load_examples
from multi_task_kobart.evaluation.job import main
from multi_task_kobart.evaluation.report import log_report_to_mlflow, report_metrics, write_report

ROWS = {
    "style_transfer": [("이거 좀 도와줘", "이것 좀 도와주세요."), ("빨리 와", "빨리 와 주세요."),
                       ("밥 먹었어?", "식사하셨어요?"), ("내일 봐", "내일 뵙겠습니다.")],
    "dialogue_summarization": [("A: 내일 회의 몇 시야? B: 오후 2시입니다.", "내일 회의는 오후 2시입니다."),
                               ("A: 점심 뭐 먹을래? B: 김밥 먹자.", "두 사람은 점심으로 김밥을 먹기로 합니다."),
                               ("A: 비 와? B: 응, 우산 챙겨.", "비가 와서 우산을 챙깁니다.")],
    "role_generation": [("[친구] 주말에 뭐해?", "특별한 계획은 없어. 너는?"),
                        ("[선생님] 파이썬이란?", "파이썬은 배우기 쉬운 프로그래밍 언어입니다."),
                        ("[친구] 배고파", "뭐 좀 먹으러 가자.")],
    "qa_generation": [("질문: 서울의 인구는? 문맥: 서울의 인구는 약 1천만 명이다.", "약 1천만 명"),
                      ("질문: 회의는 몇 시? 문맥: 회의는 오후 2시에 열린다.", "오후 2시"),
                      ("질문: 수도는? 문맥: 한국의 수도는 서울이다.", "서울")],
}


def _examples() -> dict[str, list[dict]]:
    examples = {}
    for task, pairs in ROWS.items():
        examples[task] = [{"id": f"{task}-{i}", "task": task, "input": source, "target": target,
                           **({"answers": [target, target.replace(" ", "")]} if task == "qa_generation" else {})}
                          for i, (source, target) in enumerate(pairs)]
    return examples


@pytest.fixture(scope="module")
def tokenizer():
    from multi_task_kobart.tokenizer import load_tokenizer

    return load_tokenizer()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    """A tiny model trained for 12 steps on ROWS (3 per task), saved with its tokenizer."""
    from multi_task_kobart.model import MultiTaskKoBART, MultiTaskKoBARTConfig
    from multi_task_kobart.tokenizer import encode_sources, encode_targets

    torch.manual_seed(0)
    model = MultiTaskKoBART(MultiTaskKoBARTConfig.tiny(vocab_size=len(tokenizer)))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batches = {}
    for task, rows in _examples().items():
        sources, _ = encode_sources(tokenizer, [r["input"] for r in rows], 64)
        labels, _ = encode_targets(tokenizer, [r["target"] for r in rows], 32)
        input_ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in sources], batch_first=True,
                                                    padding_value=tokenizer.pad_token_id)
        label_ids = torch.nn.utils.rnn.pad_sequence([torch.tensor(s) for s in labels], batch_first=True,
                                                    padding_value=-100)
        batches[task] = (input_ids, (input_ids != tokenizer.pad_token_id).long(), label_ids)
    model.train()
    for _ in range(3):  # a few real optimizer steps: enough to leave the random init, still fast
        for task, (input_ids, mask, labels) in batches.items():
            loss = model(input_ids=input_ids, attention_mask=mask, task=task, labels=labels).loss
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
    path = tmp_path_factory.mktemp("ckpt")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(checkpoint):
    from multi_task_kobart.model import MultiTaskKoBART

    return MultiTaskKoBART.from_pretrained(checkpoint)


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory):
    """One real local SQLite MLflow store for this module (creating one costs seconds)."""
    import mlflow

    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root}/mlflow.db"
    mlflow.set_tracking_uri(uri)
    return uri, root


@pytest.fixture(scope="module")
def report(model, tokenizer):
    return evaluate_model(model, tokenizer, _examples(), batch_size=2,
                          generation_kwargs={"num_beams": 2, "max_new_tokens": 12}, progress=False)


def test_report_has_each_task_s_metrics_and_baselines(report):
    assert list(report["tasks"]) == list(ROWS)
    for task, section in report["tasks"].items():
        assert section["n_examples"] == len(ROWS[task])
        expected = set(TASK_METRICS[task]) - {"bertscore_f1"} | {"perplexity"}
        assert set(section["metrics"]) == expected, task
        assert all(0.0 <= v <= 100.0 for k, v in section["metrics"].items() if k != "perplexity")
        assert "copy_input" in section["baselines"]
        assert len(section["predictions"]) == len(ROWS[task])
    assert set(report["tasks"]["dialogue_summarization"]["baselines"]) == {"copy_input", "lead_sentence"}
    assert report["tasks"]["dialogue_summarization"]["skipped"] == {"bertscore": BERTSCORE_NOT_CONFIGURED}
    assert report["settings"]["bleu_tokenize"] == "char"


def test_baselines_are_scored_with_the_same_metrics(report):
    style = report["tasks"]["style_transfer"]
    inputs = [source for source, _ in ROWS["style_transfer"]]
    targets = [target for _, target in ROWS["style_transfer"]]
    copy = style["baselines"]["copy_input"]
    assert copy["bleu"] == pytest.approx(metrics.bleu(inputs, targets))
    assert copy["style_accuracy"] == 0.0  # the informal inputs are not formal
    assert style["reference_style_accuracy"] == 100.0
    lead = report["tasks"]["dialogue_summarization"]["baselines"]["lead_sentence"]
    leads = ["내일 회의 몇 시야?", "점심 뭐 먹을래?", "비 와?"]
    refs = [target for _, target in ROWS["dialogue_summarization"]]
    assert lead["rouge1"] == pytest.approx(metrics.rouge(leads, refs)["rouge1"])


def test_model_metrics_match_its_own_predictions(report):
    qa = report["tasks"]["qa_generation"]
    predictions = [row["prediction"] for row in qa["predictions"]]
    golds = [[target, target.replace(" ", "")] for _, target in ROWS["qa_generation"]]
    assert qa["metrics"]["f1"] == pytest.approx(metrics.qa_scores(predictions, golds)["f1"])


def test_perplexity_equals_exp_of_the_model_loss(report, model, tokenizer):
    # One row per task: the model's mean token loss over that row is log(perplexity).
    from multi_task_kobart.tokenizer import encode_sources, encode_targets

    row = _examples()["role_generation"][:1]
    single = evaluate_model(model, tokenizer, {"role_generation": row}, batch_size=1,
                            generation_kwargs={"max_new_tokens": 4}, progress=False)
    sources, _ = encode_sources(tokenizer, [row[0]["input"]], 1024)
    labels, _ = encode_targets(tokenizer, [row[0]["target"]], 1024)
    with torch.no_grad():
        loss = model(input_ids=torch.tensor(sources), attention_mask=torch.ones(1, len(sources[0]), dtype=torch.long),
                     task="role_generation", labels=torch.tensor(labels)).loss
    assert single["tasks"]["role_generation"]["metrics"]["perplexity"] == pytest.approx(math.exp(float(loss)), rel=1e-4)
    assert single["tasks"]["role_generation"]["target_tokens"] == len(labels[0])


def test_bertscore_is_reported_when_a_local_model_is_configured(model, tokenizer, tiny_bert_dir):
    rows = _examples()["dialogue_summarization"]
    section = evaluate_model(model, tokenizer, {"dialogue_summarization": rows}, bertscore_model=tiny_bert_dir,
                             generation_kwargs={"max_new_tokens": 4}, progress=False)["tasks"]["dialogue_summarization"]
    assert section["skipped"] == {}
    predictions = [row["prediction"] for row in section["predictions"]]
    references = [row["target"] for row in rows]
    expected = metrics.bertscore(predictions, references, tiny_bert_dir)["bertscore_f1"]
    assert section["metrics"]["bertscore_f1"] == pytest.approx(expected)
    assert 0.0 < section["baselines"]["lead_sentence"]["bertscore_f1"] <= 100.0


def test_limit_and_argument_errors(model, tokenizer):
    small = evaluate_model(model, tokenizer, _examples(), batch_size=8, limit=1,
                           generation_kwargs={"max_new_tokens": 4}, progress=False)
    assert all(section["n_examples"] == 1 for section in small["tasks"].values())
    with pytest.raises(ValueError, match="Unknown task 'translation'"):
        evaluate_model(model, tokenizer, {"translation": []}, progress=False)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        evaluate_model(model, tokenizer, _examples(), batch_size=0, progress=False)
    with pytest.raises(FileNotFoundError, match="config.json"):
        evaluate_model(model, tokenizer, _examples(), bertscore_model="/nowhere/bert", progress=False)
    with pytest.raises(ValueError, match="num_return_sequences must be 1, got 2"):
        evaluate_model(model, tokenizer, _examples(), progress=False,
                       generation_kwargs={"num_beams": 2, "num_return_sequences": 2})


def test_write_report_and_log_to_an_active_run(report, tmp_path, mlflow_store):
    import mlflow

    paths = write_report(report, tmp_path / "out")
    assert json.loads(paths["json"].read_text(encoding="utf-8"))["tasks"]["qa_generation"]["n_examples"] == 3
    assert "predictions" not in json.loads(paths["json"].read_text(encoding="utf-8"))["tasks"]["qa_generation"]
    markdown = paths["markdown"].read_text(encoding="utf-8")
    assert "## style_transfer (n=4)" in markdown and "| bleu |" in markdown and "Skipped bertscore" in markdown
    for task in ROWS:
        assert paths[f"chart_{task}"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(paths["predictions"].read_text(encoding="utf-8").splitlines()) == sum(map(len, ROWS.values()))

    uri, root = mlflow_store
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("eval-active", artifact_location=(root / "active").as_uri())
    with pytest.raises(ValueError, match="no MLflow run"):
        log_report_to_mlflow(report, paths)
    with mlflow.start_run(experiment_id=experiment) as run:
        log_report_to_mlflow(report, paths)
    logged = mlflow.get_run(run.info.run_id).data.metrics
    assert logged == pytest.approx(report_metrics(report))
    assert "eval/dialogue_summarization/lead_sentence/rougeL" in logged


def _write_seed_file(path):
    with path.open("w", encoding="utf-8") as handle:
        for rows in _examples().values():
            for row in rows:
                record = {key: row[key] for key in ("task", "input", "target", "answers") if key in row}
                handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def test_job_on_seed_files_and_runs_uri_logs_to_mlflow(checkpoint, tmp_path, capsys, mlflow_store):
    import mlflow
    from mlflow import MlflowClient

    uri, root = mlflow_store
    mlflow.set_tracking_uri(uri)
    experiment = mlflow.create_experiment("eval-job", artifact_location=(root / "job").as_uri())
    with mlflow.start_run(experiment_id=experiment) as source_run:
        mlflow.log_artifacts(str(checkpoint), "checkpoint")  # the model as an MLflow artifact
    seed = _write_seed_file(tmp_path / "seed.jsonl")
    out = tmp_path / "report"
    code = main(["--model", f"runs:/{source_run.info.run_id}/checkpoint", "--data", str(seed),
                 "--limit", "2", "--batch-size", "2", "--num-beams", "2", "--max-new-tokens", "8",
                 "--out", str(out), "--tracking-uri", uri, "--mlflow-run-id", source_run.info.run_id,
                 "--no-progress"])
    assert code == 0
    assert "## qa_generation (n=2)" in capsys.readouterr().out
    written = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert written["data"]["kind"] == "seed" and written["settings"]["generation"]["num_beams"] == 2
    assert {p.name for p in out.iterdir()} >= {"report.json", "report.md", "predictions.jsonl",
                                                "chart_style_transfer.png", "chart_qa_generation.png"}
    client = MlflowClient(tracking_uri=uri)
    logged = client.get_run(source_run.info.run_id).data.metrics
    assert "eval/style_transfer/style_accuracy" in logged and "eval/qa_generation/f1" in logged
    artifacts = {item.path for item in client.list_artifacts(source_run.info.run_id, "evaluation")}
    assert {"evaluation/report.json", "evaluation/report.md", "evaluation/chart_role_generation.png"} <= artifacts


def test_job_on_a_prepared_dataset_uses_its_test_split(checkpoint, tmp_path):
    from multi_task_kobart.data.prepare import prepare_dataset

    seed_dir = tmp_path / "seed"
    seed_dir.mkdir()
    _write_seed_file(seed_dir / "test.jsonl")
    prepared = prepare_dataset(seed_dir, tmp_path / "prepared", tokenizer=str(checkpoint))
    out = tmp_path / "report"
    main(["--model", str(checkpoint), "--data", str(prepared.path), "--split", "test", "--max-new-tokens", "4",
          "--out", str(out), "--tasks", "style_transfer", "qa_generation", "--no-progress"])
    written = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert written["data"]["kind"] == "prepared" and written["data"]["pretokenized_ids_used"] is True
    assert list(written["tasks"]) == ["style_transfer", "qa_generation"]
    assert written["tasks"]["style_transfer"]["n_examples"] == 4


def test_load_examples_from_real_seed_files(realdata_dir):
    loaded = load_examples(realdata_dir)  # file names mark no split: every file is evaluated
    assert {task: len(rows) for task, rows in loaded.by_task.items()} == {
        "style_transfer": 200, "dialogue_summarization": 166, "role_generation": 200, "qa_generation": 200}
    assert loaded.source["split_matched_file_names"] is False
    assert all(row["answers"] for row in loaded.by_task["qa_generation"])


def test_load_examples_prefers_files_named_for_the_split(tmp_path):
    _write_seed_file(tmp_path / "train.jsonl")
    (tmp_path / "test.jsonl").write_text(
        json.dumps({"task": "style_transfer", "input": "안녕", "target": "안녕하세요"}, ensure_ascii=False) + "\n"
        + '{"task": "style_transfer", "input": ""}\n', encoding="utf-8")
    loaded = load_examples(tmp_path, split="test")
    assert list(loaded.by_task) == ["style_transfer"] and len(loaded.by_task["style_transfer"]) == 1
    assert loaded.source["invalid_rows_skipped"] == 1
    with pytest.raises(ValueError, match="no rows to evaluate"):
        load_examples(tmp_path, split="test", tasks=["qa_generation"])


def test_job_rejects_a_missing_model(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an existing directory nor an MLflow URI"):
        main(["--model", str(tmp_path / "missing"), "--data", str(tmp_path), "--out", str(tmp_path / "o")])
