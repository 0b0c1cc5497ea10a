"""The fan-out application over HTTP on loopback: Ingress -> Encoder -> Decoder_<task> x 4.

Batching is off here (max_batch_size 1 on every hop), so every answer must be token-exact with
``model.generate`` in this process. The module ends with a rollout to another model under load.
"""

from __future__ import annotations

import threading
import time

import pytest
import requests
from serving_helpers import Reference, deploy, generate, post, undeploy

from multi_task_kobart.serving.app import ServeArgs
from multi_task_kobart.tasks import EXAMPLE_INPUTS, TASKS

pytestmark = pytest.mark.slow

APP = "mtk-fanout"
ALL_EXAMPLES = [text for task in TASKS for text in EXAMPLE_INPUTS[task]]


def fanout_args(model: str) -> ServeArgs:
    unbatched = {"num_cpus": 0.25, "max_batch_size": 1, "max_ongoing_requests": 4}
    return ServeArgs(model=model, topology="fanout", ingress={"num_cpus": 0.1}, encoder=unbatched,
                     decoder=unbatched, api_key_env=None)


@pytest.fixture(scope="module")
def url(serve_url, tiny_checkpoint):
    deploy(fanout_args(str(tiny_checkpoint)), APP, serve_url)
    yield serve_url
    undeploy(APP)


@pytest.fixture(scope="module")
def reference(tiny_checkpoint) -> Reference:
    return Reference(tiny_checkpoint)


def stats(deployment: str) -> dict:
    from ray import serve

    return serve.get_deployment_handle(deployment, app_name=APP).stats.remote().result(timeout_s=60)


@pytest.mark.parametrize("task", TASKS)
def test_each_task_is_token_exact_with_in_process_generate(url, reference, task):
    for text in EXAMPLE_INPUTS[task]:
        body = generate(url, {"task": task, "text": text})
        [output] = body["outputs"]
        assert output["token_ids"] == reference.generate([text], task)[0]
        assert output["text"] == reference.text(output["token_ids"])
        assert (output["task"], body["routed"], body["encoder"]["calls"]) == (task, False, 1)
        assert body["model"]["id"] == reference.model_id


def test_texts_come_back_in_order_equal_to_the_padded_batch(url, reference):
    texts = ["빨리 와", "이거 좀 도와주세요 정말 급해요 지금 당장", "응",
             "A: 내일 회의 몇 시에요? B: 오후 2시입니다.", "밥 먹자"]
    body = generate(url, {"task": "style_transfer", "texts": texts})
    assert [out["input_index"] for out in body["outputs"]] == list(range(len(texts)))
    assert [out["token_ids"] for out in body["outputs"]] == reference.generate(texts, "style_transfer")


def test_auto_uses_the_router_and_says_which_task(url, reference):
    body = generate(url, {"task": "auto", "texts": ALL_EXAMPLES})
    assert body["routed"] is True and body["task"] == "auto"
    assert [out["task"] for out in body["outputs"]] == reference.predict_task(ALL_EXAMPLES)
    assert [out["token_ids"] for out in body["outputs"]] == reference.generate(ALL_EXAMPLES, "auto")


def test_a_request_for_four_tasks_runs_the_encoder_once(url, reference):
    before = {name: stats(name)["counts"] for name in ["Encoder", *(f"Decoder_{t}" for t in TASKS)]}
    text = "이거 좀 도와주세요"
    body = generate(url, {"tasks": list(TASKS), "text": text})
    after = {name: stats(name)["counts"] for name in before}
    assert after["Encoder"].get("requests", 0) - before["Encoder"].get("requests", 0) == 1
    for task in TASKS:
        name = f"Decoder_{task}"
        assert after[name].get("decode_requests", 0) - before[name].get("decode_requests", 0) == 1
    assert body["encoder"] == {"calls": 1, "passes": 1, "per_task_encoding": False}
    assert [out["task"] for out in body["outputs"]] == list(TASKS)
    assert [out["token_ids"] for out in body["outputs"]] == [reference.generate([text], t)[0] for t in TASKS]
    assert set(body["timings_ms"]["per_task"]) == set(TASKS)


def test_generation_arguments_are_applied(url, reference):
    args = {"num_beams": 3, "max_new_tokens": 6, "no_repeat_ngram_size": 0, "repetition_penalty": 1.0}
    body = generate(url, {"task": "qa_generation", "text": "질문: 서울의 인구는?", **args})
    ids = body["outputs"][0]["token_ids"]
    assert ids == reference.generate(["질문: 서울의 인구는?"], "qa_generation", **args)[0]
    assert len(ids) <= 1 + 6  # decoder start + at most 6 new tokens


def test_pipeline_feeds_each_output_to_the_next_step(url, reference):
    steps = ["dialogue_summarization", "style_transfer"]
    text = "A: 내일 회의 몇 시에요? B: 오후 2시입니다."
    body = post(url, "/v1/pipeline", {"text": text, "steps": steps}).json()
    expected = text
    for step, task in zip(body["steps"], steps):
        assert step["input"] == expected
        expected = reference.text(reference.generate([expected], task)[0])
        assert (step["used"], step["output"]) == (task, expected)
    assert body["output"] == expected


def test_tasks_health_playground_and_openapi(url, reference):
    tasks = requests.get(f"{url}/v1/tasks", timeout=30).json()
    assert [t["name"] for t in tasks["tasks"]] == list(TASKS)
    assert [t["deployment"] for t in tasks["tasks"]] == [f"Decoder_{t}" for t in TASKS]
    assert tasks["auto"] is True and tasks["topology"] == "fanout" and tasks["model"]["id"] == reference.model_id
    health = requests.get(f"{url}/healthz", timeout=30)
    assert health.status_code == 200
    assert health.json()["deployments"] == {name: "ok" for name in ["Encoder", *(f"Decoder_{t}" for t in TASKS)]}
    page = requests.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and "/v1/generate" in page.text and "/v1/pipeline" in page.text
    paths = requests.get(f"{url}/openapi.json", timeout=30).json()["paths"]
    assert {"/v1/generate", "/v1/pipeline", "/v1/tasks", "/healthz"} <= set(paths)


def test_replicas_hold_only_their_parts_and_set_their_threads(url, reference):
    from multi_task_kobart.serving.runtime import loaded_bytes

    model = reference.model
    shared = model.shared.weight.numel() * 4
    whole = loaded_bytes(model)
    encoder, decoder = stats("Encoder"), stats("Decoder_style_transfer")
    encoder_own = [p for p in [*model.encoder.parameters(), *model.router.parameters()] if p is not model.shared.weight]
    assert encoder["weights_bytes"] == shared + sum(p.numel() * 4 for p in encoder_own)
    decoder_own = model.get_decoder_parameters("style_transfer")
    assert decoder["weights_bytes"] == shared + sum(p.numel() * 4 for p in decoder_own)
    assert decoder["weights_bytes"] < whole and encoder["weights_bytes"] < whole
    for replica in (encoder, decoder):  # 0.25 CPU -> 1 thread, also on the compute thread
        assert replica["torch_threads"] == replica["compute_thread_torch_threads"] == 1
    print({name: {k: stats(name).get(k) for k in ("rss_bytes", "pss_bytes", "weights_bytes")}
           for name in ["Encoder", *(f"Decoder_{t}" for t in TASKS)]})


def test_rollout_to_another_model_fails_no_request(url, reference, adapter_checkpoint):
    """Last in the module: replaces the app's model (other width, adapters) under light load."""
    from multi_task_kobart.serving.runtime import model_fingerprint

    new_id = model_fingerprint(adapter_checkpoint)
    results: list[tuple[int, str | None]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            response = requests.post(f"{url}/v1/generate", json={"task": "style_transfer", "text": "빨리 와"},
                                     timeout=120)
            model_id = response.json()["model"]["id"] if response.status_code == 200 else response.text
            results.append((response.status_code, model_id))
            time.sleep(0.05)

    threads = [threading.Thread(target=client) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(1.0)
        deploy(fanout_args(str(adapter_checkpoint)), APP, url)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not results[-4:] or any(m != new_id for _, m in results[-4:])):
            time.sleep(0.2)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    failed = [result for result in results if result[0] != 200]
    assert not failed, failed
    ids = [model_id for _, model_id in results]
    assert ids[0] == reference.model_id and ids[-1] == new_id, ids
    assert set(ids) == {reference.model_id, new_id}
    print(f"rollout: {len(results)} requests, {ids.count(reference.model_id)} old, {ids.count(new_id)} new, 0 failed")
