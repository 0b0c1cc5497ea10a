"""The colocated application over HTTP on loopback: Ingress -> Colocated (the whole model).

Here the model has per-task encoder adapters, batching is on, an API key is required and the
limits and queues are small: bad requests, overload (503), batched parity, and logs without text.
"""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from serving_helpers import Reference, deploy, generate, post, undeploy

from multi_task_kobart.serving.app import ServeArgs
from multi_task_kobart.tasks import EXAMPLE_INPUTS, TASKS

pytestmark = pytest.mark.slow

APP = "mtk-colocated"
KEY = "test-key-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMITS = {"max_texts": 8, "max_input_chars": 200, "max_input_tokens": 40, "max_new_tokens": 64,
          "max_num_beams": 4, "max_pipeline_steps": 3}


@pytest.fixture(scope="module")
def url(serve_url, adapter_checkpoint):
    args = ServeArgs(model=str(adapter_checkpoint), topology="colocated", limits=LIMITS,
                     ingress={"max_ongoing_requests": 8, "max_queued_requests": 8,
                              "runtime_env": {"env_vars": {"MTK_SERVE_API_KEY": KEY}}},
                     colocated={"num_cpus": 0.5, "max_batch_size": 8, "max_ongoing_requests": 32,
                                "batch_wait_timeout_s": 0.05})
    deploy(args, APP, serve_url)
    yield serve_url
    undeploy(APP)


@pytest.fixture(scope="module")
def reference(adapter_checkpoint) -> Reference:
    return Reference(adapter_checkpoint)


def replica_pid() -> int:
    from ray import serve

    return serve.get_deployment_handle("Colocated", app_name=APP).stats.remote().result(timeout_s=60)["pid"]


def test_api_key_is_required_on_v1_but_not_on_health_or_playground(url):
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        response = post(url, "/v1/generate", {"task": "poetry"}, headers, expect=401)  # 401 before the 422
        assert "API key" in response.json()["detail"] and response.headers["WWW-Authenticate"] == "Bearer"
    assert requests.get(f"{url}/v1/tasks", timeout=30).status_code == 401
    assert requests.get(f"{url}/v1/tasks", headers=AUTH, timeout=30).status_code == 200
    assert requests.get(f"{url}/healthz", timeout=30).status_code == 200
    assert requests.get(f"{url}/", timeout=30).status_code == 200


VALID = {"task": "style_transfer", "text": "빨리 와"}
BAD_REQUESTS = [
    ({"task": "poetry", "text": "x"}, 422, "task: Unknown task 'poetry'. Valid tasks are: 'style_transfer', "
     "'dialogue_summarization', 'role_generation', 'qa_generation', or 'auto'."),
    ({"tasks": ["style_transfer", "poetry"], "text": "x"}, 422, "Unknown task 'poetry'"),
    ({"tasks": ["auto"], "text": "x"}, 422, "tasks: Unknown task 'auto'"),
    ({"tasks": ["qa_generation", "qa_generation"], "text": "x"}, 422, "name a task twice"),
    ({**VALID, "tasks": ["qa_generation"]}, 422, "exactly one of 'task'"),
    ({"text": "x"}, 422, "exactly one of 'task'"),
    ({"task": "style_transfer"}, 422, "exactly one of 'text' and 'texts'"),
    ({**VALID, "text": ""}, 422, "text is empty"),
    ({**VALID, "text": " \n "}, 422, "text is empty"),
    ({"task": "style_transfer", "texts": ["빨리 와", ""]}, 422, "texts[1] is empty"),
    ({"task": "style_transfer", "texts": []}, 422, "texts: List should have at least 1 item"),
    ({"task": "style_transfer", "texts": ["가"] * 9}, 422, "9 texts, the limit is 8 (max_texts)"),
    ({**VALID, "text": "가" * 201}, 422, "text has 201 characters; the limit is 200 (max_input_chars)"),
    ({**VALID, "text": " ".join(str(i) for i in range(60))}, 422, "text is longer than 40 tokens"),
    ({**VALID, "text": "가\ud800"}, 422, "text is not valid Unicode: a lone surrogate at character 1"),
    ({**VALID, "text": 5}, 422, "text: Input should be a valid string"),
    ({**VALID, "max_new_tokens": 65}, 422, "max_new_tokens=65 is over the limit of 64"),
    ({**VALID, "max_new_tokens": 0}, 422, "max_new_tokens: Input should be greater than or equal to 1"),
    ({**VALID, "num_beams": 5}, 422, "num_beams=5 is over the limit of 4"),
    ({**VALID, "do_sample": True, "top_p": 1.5}, 422, "top_p: Input should be less than or equal to 1"),
    ({**VALID, "do_sample": True, "temperature": 1e-300}, 422, "temperature: Input should be greater than or equal "
     "to 0.01"),  # logits / 1e-300 overflow to inf, and sampling from NaN probabilities fails in the replica
    ({**VALID, "temperature": 0.7}, 422, "temperature only apply when sampling"),
    ({**VALID, "min_new_tokens": 10, "max_new_tokens": 5}, 422, "min_new_tokens=10 is larger than max_new_tokens=5"),
    ({**VALID, "num_beam": 2}, 422, "num_beam: Extra inputs are not permitted"),
    ([VALID], 422, "Input should be a valid dictionary"),
]


@pytest.mark.parametrize(("body", "status", "message"), BAD_REQUESTS, ids=[m[:40] for _, _, m in BAD_REQUESTS])
def test_bad_generate_request_gets_status_and_message(url, body, status, message):
    response = post(url, "/v1/generate", body, AUTH, expect=status)
    assert message in response.json()["detail"], response.json()


@pytest.mark.parametrize(("body", "message"), [
    ({"text": "x", "steps": []}, "steps: List should have at least 1 item"),
    ({"text": "x", "steps": ["style_transfer"] * 4}, "4 steps, the limit is 3 (max_pipeline_steps)"),
    ({"text": "x", "steps": ["poetry"]}, "Unknown task 'poetry'"),
    ({"text": "", "steps": ["style_transfer"]}, "text is empty"),
])
def test_bad_pipeline_request_gets_status_and_message(url, body, message):
    assert message in post(url, "/v1/pipeline", body, AUTH, expect=422).json()["detail"]


def test_malformed_json_is_a_400_and_the_replica_survives_everything(url):
    pid = replica_pid()
    response = requests.post(f"{url}/v1/generate", data=b'{"task": "style_transfer", "text": ',
                             headers={**AUTH, "Content-Type": "application/json"}, timeout=30)
    assert response.status_code == 400 and "not valid JSON" in response.json()["detail"]
    generate(url, VALID, AUTH)  # still answers after every bad request of this module so far
    assert replica_pid() == pid


def test_per_task_adapters_encode_once_per_task_in_one_call(url, reference):
    texts = ["이거 좀 도와주세요", "질문: 서울의 인구는?"]
    body = generate(url, {"tasks": list(TASKS), "texts": texts}, AUTH)
    assert body["encoder"] == {"calls": 1, "passes": len(TASKS), "per_task_encoding": True}
    expected = {task: reference.generate(texts, task) for task in TASKS}
    assert [(o["input_index"], o["task"]) for o in body["outputs"]] == [(i, t) for i in range(2) for t in TASKS]
    assert all(o["token_ids"] == expected[o["task"]][o["input_index"]] for o in body["outputs"])
    assert len({tuple(expected[task][0]) for task in TASKS}) > 1  # the adapters really differ per task


def test_auto_with_adapters_matches_in_process_routing(url, reference):
    texts = [text for task in TASKS for text in EXAMPLE_INPUTS[task]]
    body = generate(url, {"task": "auto", "texts": texts}, AUTH)
    assert [o["task"] for o in body["outputs"]] == reference.predict_task(texts)
    assert [o["token_ids"] for o in body["outputs"]] == reference.generate(texts, "auto")
    assert body["encoder"]["passes"] == 1 + len(set(reference.predict_task(texts)))  # router + one per task


def test_concurrent_requests_are_batched_and_equal_the_padded_batch(url, reference):
    texts = ["빨리 와", "이거 좀 도와주세요", "밥 먹었어?", "내일 보자", "응", "조용히 해 줘", "어디야 지금"]
    with ThreadPoolExecutor(len(texts)) as pool:
        bodies = list(pool.map(lambda text: generate(url, {"task": "role_generation", "text": text}, AUTH), texts))
    batch_sizes = [body["timings_ms"]["per_task"]["role_generation"]["batch_requests"] for body in bodies]
    assert max(batch_sizes) > 1, batch_sizes
    expected = reference.generate(texts, "role_generation")
    assert [body["outputs"][0]["token_ids"] for body in bodies] == expected


def test_pipeline_and_tasks(url, reference):
    body = post(url, "/v1/pipeline", {"text": "질문: 서울의 인구는?", "steps": ["qa_generation", "role_generation"]},
                AUTH).json()
    first = reference.text(reference.generate(["질문: 서울의 인구는?"], "qa_generation")[0])
    assert body["steps"][0]["output"] == first and body["steps"][1]["input"] == first
    tasks = requests.get(f"{url}/v1/tasks", headers=AUTH, timeout=30).json()
    assert tasks["topology"] == "colocated" and tasks["per_task_encoding"] is True
    assert {t["deployment"] for t in tasks["tasks"]} == {"Colocated"}
    assert tasks["limits"]["max_input_tokens"] == 40


def test_overload_is_refused_with_503_and_the_app_recovers(url):
    pid = replica_pid()
    slow = {**VALID, "max_new_tokens": 64, "min_new_tokens": 64}
    with ThreadPoolExecutor(40) as pool:
        responses = list(pool.map(lambda _: requests.post(f"{url}/v1/generate", json=slow, headers=AUTH,
                                                          timeout=300), range(40)))
    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) == {200, 503}, statuses
    assert statuses.count(200) >= 8  # the ingress holds 8 and queues 8; the rest is refused at once
    generate(url, VALID, AUTH)
    assert replica_pid() == pid


def test_request_logs_do_not_contain_user_text(url):
    import ray

    marker = f"비밀표지-{uuid.uuid4().hex[:8]}"
    generate(url, {"task": "style_transfer", "text": marker}, AUTH)
    logs = Path(ray._private.worker._global_node.get_logs_dir_path())
    text = "\n".join(path.read_text(errors="replace") for path in logs.rglob("*") if path.is_file()
                     and path.suffix in (".log", ".out", ".err"))
    assert "generate request_id=" in text  # the ingress does log each request...
    assert marker not in text and json.dumps(marker)[1:-1] not in text  # ...but not what was asked
