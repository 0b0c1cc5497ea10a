"""The playground (``GET /``) in a real headless Chromium, driven by Selenium through chromedriver.

Debian's ``chromium`` and ``chromium-driver`` (``.ci/run`` installs them before ``make test``); the
driver's path is given explicitly, so Selenium Manager never runs and nothing is downloaded. The
test picks a mode, types Korean text and the API key, clicks Generate, waits for the page to mark
the run done and compares what the page shows with the JSON API's answer for the same input.
Skipped with the reason when the browser or the driver is absent.

Set MTK_PLAYGROUND_SCREENSHOT=/some/file.png to keep a screenshot of each answer (the last one stays).
"""

from __future__ import annotations

import os
import re
import shutil
import uuid
from pathlib import Path

import pytest
from serving_helpers import deploy, post, undeploy

from multi_task_kobart.serving.app import ServeArgs

pytestmark = pytest.mark.slow

CHROMIUM = Path(shutil.which("chromium") or "/usr/bin/chromium")
CHROMEDRIVER = Path(shutil.which("chromedriver") or "/usr/bin/chromedriver")
APP = "mtk-playground"
KEY = "test-key-" + uuid.uuid4().hex
AUTH = {"Authorization": f"Bearer {KEY}"}
ANSWER_TIMEOUT_S = 60
LATENCY = re.compile(r"^latency: \d+ ms \(server \d+ ms\)$", re.MULTILINE)


def _missing_browser() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not (path.is_file() and os.access(path, os.X_OK)):
            return (f"no headless browser: {path} is missing; install Debian's chromium and chromium-driver "
                    "(`apt-get install chromium chromium-driver`, as .ci/run does)")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed in this environment (pip install -e .)"
    return None


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for the module, Selenium Manager forbidden (it would download drivers)."""
    if reason := _missing_browser():
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.selenium_manager import SeleniumManager

    def _no_manager(*_args, **_kwargs):
        raise AssertionError("Selenium Manager ran: the test must use the system chromedriver, no downloads")

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1000,900", "--lang=ko-KR"):
        options.add_argument(arg)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(SeleniumManager, "binary_paths", _no_manager)
        driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def url(browser, serve_url, tiny_checkpoint):
    """The colocated application (one model replica) with an API key, which the page's key field sends."""
    args = ServeArgs(model=str(tiny_checkpoint), topology="colocated",
                     ingress={"num_cpus": 0.1, "runtime_env": {"env_vars": {"MTK_SERVE_API_KEY": KEY}}},
                     colocated={"num_cpus": 0.5, "max_batch_size": 4, "batch_wait_timeout_s": 0.01})
    deploy(args, APP, serve_url)
    yield serve_url
    undeploy(APP)


def ask(browser, url: str, mode: str, text: str) -> tuple[str, str]:
    """Load the page, choose ``mode``, type the key and ``text``, click; the answer and the meta lines."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    browser.get(f"{url}/")
    assert browser.title == "Multi-Task KoBART playground"
    Select(browser.find_element(By.ID, "mode")).select_by_value(mode)
    browser.find_element(By.ID, "key").send_keys(KEY)
    box = browser.find_element(By.ID, "text")
    box.clear()
    box.send_keys(text)
    assert box.get_property("value") == text  # Hangul typed as it is
    browser.find_element(By.ID, "run").click()
    answer = WebDriverWait(browser, ANSWER_TIMEOUT_S).until(
        ec.presence_of_element_located((By.CSS_SELECTOR, "#answer[data-done]")))
    error = browser.find_element(By.ID, "error").text
    assert answer.get_attribute("data-done") == "1", f"the page shows an error: {error!r}"
    assert error == ""
    if path := os.environ.get("MTK_PLAYGROUND_SCREENSHOT"):
        browser.save_screenshot(path)
    # textContent, not .text: .text trims and folds whitespace the way the page is rendered
    return answer.get_property("textContent"), browser.find_element(By.ID, "meta").get_property("textContent")


@pytest.mark.parametrize("task, text", [("style_transfer", "빨리 와"), ("auto", "질문: 서울의 인구는?")])
def test_playground_answers_a_task_as_the_api_does(browser, url, task, text):
    shown, meta = ask(browser, url, task, text)
    expected = post(url, "/v1/generate", {"task": task, "text": text}, AUTH).json()
    output = expected["outputs"][0]
    assert shown == output["text"] and shown.strip()
    chosen = f"router chose: {output['task']}" if task == "auto" else f"task: {task}"
    assert meta.splitlines()[0] == chosen
    assert LATENCY.search(meta), meta


def test_playground_runs_a_pipeline_as_the_api_does(browser, url):
    text = "A: 내일 회의 몇 시에요? B: 오후 2시입니다."
    shown, meta = ask(browser, url, "pipeline:dialogue_summarization,style_transfer", text)
    expected = post(url, "/v1/pipeline", {"text": text, "steps": ["dialogue_summarization", "style_transfer"]},
                    AUTH).json()
    assert shown == expected["output"] and shown.strip()
    lines = meta.splitlines()
    assert lines[:2] == [f"{step['used']} → {step['output']}" for step in expected["steps"]]
    assert [line.split(" → ")[0] for line in lines[:2]] == ["dialogue_summarization", "style_transfer"]
    assert LATENCY.search(meta), meta
