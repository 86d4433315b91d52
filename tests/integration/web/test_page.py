"""The web page in headless Chromium against the real stack: generate, stream, cancel, errors."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from shared.client import Client
from tests.conftest import wait_for
from tests.integration.client.cutting_proxy import CuttingProxy
from tests.integration.conftest import ApiHandle, StartApi, WorkerHandle, wait_record
from tests.integration.web.conftest import open_page

pytestmark = pytest.mark.browser

KEY = "browser-key"
# Characters: minutes of work for the tiny model (100,000 take it a second or two), so a job
# still runs, streaming, through every step a slow browser takes before the test cancels it.
LONG = 10_000_000


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle) -> ApiHandle:
    """Start an open API in front of the worker, accepting LONG jobs."""
    return start_api(max_length=LONG)


@pytest.fixture
def page(browser: Browser, redis_client: redis.Redis) -> Iterator[Page]:
    """Open a fresh browser context (empty localStorage) over a flushed job store."""
    with open_page(browser) as opened:
        yield opened


def choose_model(page: Page, name: str) -> None:
    """Wait for the model list and pick `name`."""
    page.wait_for_selector(f"#model option[value='{name}']", state="attached")
    page.select_option("#model", name)


def test_generate_streams_text_and_cancel_keeps_it(
    page: Page, stack: ApiHandle, worker: WorkerHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    page.goto(stack.url)
    choose_model(page, "tiny")
    expect(page.locator("#model-props")).to_contain_text("33 characters")
    expect(page.locator("#model-props")).to_contain_text("32 units")

    page.fill("#seed", "the ")
    page.fill("#length", "300")
    page.click("#generate")
    status, output = page.locator("#job-status"), page.locator("#output-text")
    expect(status).to_have_text("succeeded")
    expect(page.locator("#progress-text")).to_have_text("300 of 300 characters")
    expect(page.locator("#output-seed")).to_have_text("the ")
    job_id = page.locator("#job-id").text_content() or ""
    with Client(stack.url) as client:
        assert output.text_content() == client.get(job_id).text
    expect(page.locator("#job-metrics")).to_contain_text("chars/s")
    expect(page.locator("#jobs-body tr").first).to_contain_text(job_id[:8])
    expect(page.locator("#jobs-body tr").first).to_contain_text("succeeded")

    page.fill("#length", str(LONG))
    page.click("#generate")
    expect(status).to_have_text("running")
    expect(output).to_have_text(re.compile(r".{20,}", re.S))  # text arrives while it runs
    seen = len(output.text_content() or "")
    wait_for(lambda: len(output.text_content() or "") > seen, 20, "more text to stream in")
    expect(status).to_have_text("running")
    expect(page.locator("#generate")).to_be_disabled()
    long_id = page.locator("#job-id").text_content() or ""

    page.locator("#jobs-body tr", has_text=job_id[:8]).click()  # look at the first job...
    expect(page.locator("#job-id")).to_have_text(job_id)
    page.locator("#jobs-body tr", has_text=long_id[:8]).click()  # ...and follow the long one again
    expect(page.locator("#job-id")).to_have_text(long_id)
    wait_for(lambda: len(output.text_content() or "") > seen, 20, "the text to stream again")
    followed = output.text_content() or ""

    with worker.paused():  # the page's cancel is recorded while the job cannot move on
        page.click("#cancel")
        wait_record(redis_client, long_id, status="running", cancel_requested="1")
    expect(status).to_have_text("canceled")
    expect(page.locator("#generate")).to_be_enabled()
    with Client(stack.url) as client:
        job = client.get(long_id)
    assert job.status == "canceled" and 0 < len(job.text) < LONG
    assert job.text.startswith(followed)  # following again neither lost nor repeated text
    assert output.text_content() == job.text
    expect(page.locator("#jobs-body tr").first).to_contain_text("canceled")
    page.screenshot(path=str(tmp_path / "page.png"), full_page=True)
    assert (tmp_path / "page.png").stat().st_size > 10_000


def test_a_cut_stream_resumes_without_losing_text(
    page: Page, stack: ApiHandle, worker: WorkerHandle, redis_client: redis.Redis
) -> None:
    proxy = CuttingProxy(stack.port, cut_after=None).start()
    output = page.locator("#output-text")
    try:
        page.goto(proxy.url)
        choose_model(page, "tiny")
        page.fill("#length", str(LONG))
        page.click("#generate")
        # Cut only once the page has shown streamed text, so it has an event id to resume from
        # (a cut in the same read as its first events would lose them in the browser).
        expect(output).to_have_text(re.compile(r".{20,}", re.S))
        proxy.cut()
        seen = len(output.text_content() or "")
        wait_for(lambda: len(proxy.seen) == 2, 20, "the page to reconnect")
        wait_for(lambda: len(output.text_content() or "") > seen, 20, "text after the cut")
        job_id = page.locator("#job-id").text_content() or ""
        with worker.paused():  # canceled while it cannot move on, so it is still running
            page.click("#cancel")
            wait_record(redis_client, job_id, status="running", cancel_requested="1")
        expect(page.locator("#job-status")).to_have_text("canceled")
    finally:
        proxy.stop()
    assert proxy.cut_done == 1
    first, resumed = proxy.seen  # the page reconnected once, from the last event it had
    assert b"last-event-id:" not in first.lower() and b"last-event-id:" in resumed.lower()
    with Client(stack.url) as client:
        assert output.text_content() == client.get(job_id).text  # nothing lost or repeated
    expect(page.locator("#error")).to_be_hidden()


def test_api_errors_are_shown_in_plain_words(page: Page, stack: ApiHandle) -> None:
    page.goto(stack.url)
    choose_model(page, "tiny")
    page.fill("#length", "0")
    page.click("#generate")
    error = page.locator("#error")
    expect(error).to_be_visible()
    expect(page.locator("#error-title")).to_have_text("Invalid request")
    expect(page.locator("#error-fields")).to_contain_text("length: Input should be greater")
    expect(page.locator("#length")).to_have_class(re.compile(r"\binvalid\b"))
    page.fill("#length", "10")
    expect(page.locator("#length")).not_to_have_class(re.compile(r"\binvalid\b"))
    page.click("#generate")
    expect(error).to_be_hidden()
    expect(page.locator("#job-status")).to_have_text("succeeded")


def test_api_key_is_asked_for_saved_and_sent(
    page: Page, stack: ApiHandle, start_api: StartApi
) -> None:
    keyed = start_api(api_keys=KEY)
    page.goto(keyed.url)
    expect(page.locator("#error-title")).to_have_text("This server needs an API key.")
    page.fill("#api-key", KEY)
    page.click("#key-form button")
    choose_model(page, "tiny")
    expect(page.locator("#error")).to_be_hidden()
    page.fill("#length", "20")
    page.click("#generate")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    page.reload()
    expect(page.locator("#api-key")).to_have_value(KEY)
    expect(page.locator("#jobs-body tr")).to_have_count(1)
    expect(page.locator("#jobs-body tr").first).to_contain_text("succeeded")
