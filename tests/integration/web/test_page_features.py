"""The web page's ml5-style extras in headless Chromium against the real stack.

The next-character chart follows the seed, several samples stream side by side, stop sequences
end samples, and the output can be copied and downloaded.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from playwright.sync_api import Browser, Error, Locator, Page, Route, expect

from shared.jobs.keys import output_key
from tests.conftest import wait_for
from tests.integration.conftest import ApiHandle, StartApi, WorkerHandle, wait_record
from tests.integration.web.conftest import open_page

pytestmark = pytest.mark.browser

VISIBLE = {" ": "␣", "\n": "⏎", "\t": "⇥"}  # how the chart labels invisible characters
LONG = 10_000_000  # characters per sample: the tiny model needs many seconds for them


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle) -> ApiHandle:
    """Start an open API, accepting LONG jobs, in front of the module's worker of `tiny`."""
    return start_api(max_length=LONG)


@pytest.fixture
def page(browser: Browser, stack: ApiHandle, redis_client: redis.Redis) -> Iterator[Page]:
    """Open the page in a fresh context (clipboard allowed) over a flushed job store."""
    allowed = ["clipboard-read", "clipboard-write"]
    with open_page(browser, permissions=allowed, accept_downloads=True) as opened:
        opened.goto(stack.url)
        opened.wait_for_selector("#model option[value='tiny']", state="attached")
        opened.select_option("#model", "tiny")
        yield opened


@pytest.fixture
def api(stack: ApiHandle) -> httpx.Client:
    """Return a client of the API."""
    return stack.client()


def percent(probability: float) -> str:
    """Format a probability as the page does: JavaScript's toFixed(1) rounds half up."""
    value = Decimal(probability * 100).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{value}%"


def predicted(api: httpx.Client, seed: str, temperature: float) -> tuple[list[str], list[str]]:
    """Return the chart's expected labels and percentages, from the API directly."""
    body = {"seed": seed, "temperature": temperature, "top": 20}
    response = api.post("/v1/models/tiny/predict", json=body)
    response.raise_for_status()
    ranked = response.json()["probabilities"]
    labels = [VISIBLE.get(p["char"], p["char"]) for p in ranked]
    return labels, [percent(p["probability"]) for p in ranked]


def expect_chart(page: Page, expected: tuple[list[str], list[str]]) -> None:
    """Wait until the chart shows these labels and percentages, in this order."""
    labels, percentages = expected
    assert len(labels) == 20
    expect(page.locator("#chart .bar-label")).to_have_text(labels)
    expect(page.locator("#chart .bar-pct")).to_have_text(percentages)
    expect(page.locator("#chart")).not_to_have_class(re.compile(r"\bstale\b"))


def temperature(page: Page) -> float:
    """Return the temperature the page's slider shows."""
    return float(page.input_value("#temperature"))


def get_job(api: httpx.Client, job_id: str) -> dict[str, Any]:
    """Return a job as the API shows it."""
    response = api.get(f"/v1/jobs/{job_id}")
    response.raise_for_status()
    job: dict[str, Any] = response.json()
    return job


def generate(page: Page, *, seed: str, length: int, n: int) -> str:
    """Fill in the form, press Generate, wait for success; return the job id."""
    page.fill("#seed", seed)
    page.fill("#length", str(length))
    page.fill("#n", str(n))
    previous = page.locator("#job-id").text_content() or ""
    page.click("#generate")
    expect(page.locator("#job-id")).not_to_have_text(previous)  # not the last job's success
    expect(page.locator("#job-status")).to_have_text("succeeded")
    return page.locator("#job-id").text_content() or ""


# The panes' texts, taken in one go while the job runs and every pane has some.
RUNNING_PANES = """() => {
  const status = document.getElementById("job-status").textContent;
  const texts = [...document.querySelectorAll(".pane .pane-output")].map((e) => e.textContent);
  return status === "running" && texts.length === 3 && texts.every((t) => t.length >= 20) && texts;
}"""


def pane_texts(page: Page) -> list[str]:
    """Return the generated text of each sample pane (without the seed)."""
    return page.locator(".pane .pane-output").all_text_contents()


def rows_of(panes: Locator) -> int:
    """Return on how many rows the panes are laid out."""
    tops = set()
    for pane in panes.all():
        box = pane.bounding_box()
        assert box is not None
        tops.add(round(box["y"]))
    return len(tops)


def test_the_chart_follows_the_seed(page: Page, api: httpx.Client) -> None:
    page.fill("#seed", "the ")
    expected = predicted(api, "the ", temperature(page))
    expect_chart(page, expected)
    expect(page.locator("#chart-caption")).to_contain_text("the␣")

    page.locator("#seed").press_sequentially("qu")  # one request after the typing pauses
    more = predicted(api, "the qu", temperature(page))
    assert more != expected
    expect_chart(page, more)
    expect(page.locator("#chart-caption")).to_contain_text("the␣qu")

    page.locator("#temperature").fill("1.5")  # a new temperature redraws the chart
    expect_chart(page, predicted(api, "the qu", 1.5))

    page.fill("#seed", "The")  # "T" is outside the vocabulary: a quiet note, no error banner
    message = page.locator("#chart-message")
    expect(message).to_contain_text("seed:")
    expect(message).to_contain_text("not in the vocabulary")
    expect(page.locator("#chart .bar-label")).to_have_count(0)
    expect(page.locator("#error")).to_be_hidden()

    page.fill("#seed", "a\nb")  # newlines are labelled with a visible sign
    expected = predicted(api, "a\nb", 1.5)
    expect_chart(page, expected)
    expect(message).to_be_hidden()


def test_a_stale_chart_answer_does_not_overwrite_a_newer_one(page: Page, api: httpx.Client) -> None:
    expect(page.locator("#chart .bar-label")).to_have_count(20)  # the default seed's chart
    held: list[Route] = []

    def hold_the_first(route: Route) -> None:
        if held:
            route.continue_()
        else:
            held.append(route)  # never answered while the newer request runs

    page.route("**/v1/models/tiny/predict", hold_the_first)
    with page.expect_request("**/predict"):
        page.fill("#seed", "an")
    with page.expect_event("requestfailed", lambda request: "predict" in request.url):
        page.fill("#seed", "and ")  # the page aborts the older request
    expect_chart(page, predicted(api, "and ", temperature(page)))
    with contextlib.suppress(Error):
        held[0].continue_()  # too late: the page no longer waits for it
    expect_chart(page, predicted(api, "and ", temperature(page)))


def test_three_samples_stream_side_by_side(
    page: Page, api: httpx.Client, worker: WorkerHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    page.fill("#seed", "the ")
    page.fill("#length", str(LONG))
    page.fill("#n", "3")
    with page.expect_response(lambda r: r.request.method == "POST" and "/v1/jobs" in r.url) as sent:
        page.click("#generate")
    job_id = sent.value.json()["id"]
    # The worker writes faster than a page can show: stopped once every sample has some text, it
    # leaves the page a bounded text to stream while the job still runs (LONG is far off).
    wait_for(
        lambda: all(redis_client.strlen(output_key(job_id, i)) >= 20 for i in range(3)),
        30,
        "every sample's first characters",
    )
    with worker.paused():
        panes = page.locator(".pane")
        expect(panes).to_have_count(3)
        expect(page.locator("#output")).to_be_hidden()
        streamed = page.wait_for_function(RUNNING_PANES).json_value()  # each pane streams its own
        page.click("#cancel")
        wait_record(redis_client, job_id, status="running", cancel_requested="1")
    expect(page.locator("#job-status")).to_have_text("canceled", timeout=60_000)
    job = get_job(api, job_id)
    assert isinstance(job["output"], list) and len(job["output"]) == 3
    assert len(set(job["output"])) == 3  # three different samples, not one repeated
    for text, final in zip(streamed, job["output"], strict=True):
        assert final.startswith(text) and len(final) < LONG  # nothing lost or repeated
    assert pane_texts(page) == job["output"]

    job_id = generate(page, seed="the ", length=400, n=3)
    job = get_job(api, job_id)
    assert pane_texts(page) == job["output"]
    assert job["finish_reason"] == ["length"] * 3
    expect(page.locator(".pane .finish")).to_have_text(["length"] * 3)
    expect(page.locator(".pane .pane-title")).to_have_text(["Sample 1", "Sample 2", "Sample 3"])
    assert rows_of(panes) == 1, "the three panes sit side by side on a wide screen"
    expect_chart(page, predicted(api, "the ", temperature(page)))
    page.screenshot(path=str(tmp_path / "three-samples.png"), full_page=True)

    page.set_viewport_size({"width": 600, "height": 900})  # narrow: the panes wrap
    assert rows_of(panes) > 1
    page.set_viewport_size({"width": 1280, "height": 900})

    page.fill("#n", "1")  # back to a single sample: the single output box again
    job_id = generate(page, seed="the ", length=50, n=1)
    expect(page.locator(".pane")).to_have_count(0)
    expect(page.locator("#output-text")).to_have_text(get_job(api, job_id)["output"])


def test_stop_sequences_end_the_samples(page: Page, api: httpx.Client) -> None:
    page.click("summary")  # "More options"
    page.fill("#random_seed", "7")
    page.fill("#stop", "h\n\\n\\n")  # "\n" typed literally stands for a newline
    job_id = generate(page, seed="the ", length=300, n=3)
    job = get_job(api, job_id)
    assert job["input"]["stop"] == ["h", "\n\n"]
    assert job["finish_reason"] == ["stop"] * 3
    expect(page.locator(".pane .finish")).to_have_text(["stop"] * 3)
    assert pane_texts(page) == job["output"]
    for text in job["output"]:
        assert "h" not in text and len(text) < 300

    page.fill("#n", "1")  # a single sample shows its finish reason with the metrics
    job_id = generate(page, seed="the ", length=300, n=1)
    assert get_job(api, job_id)["finish_reason"] == "stop"
    expect(page.locator("#job-metrics")).to_contain_text("finish")
    expect(page.locator("#job-metrics")).to_contain_text("stop")

    page.fill("#stop", "\n".join(f"s{index}" for index in range(9)))  # one too many
    page.click("#generate")
    expect(page.locator("#error-fields")).to_contain_text("stop")
    expect(page.locator("#stop")).to_have_class(re.compile(r"\binvalid\b"))


def test_copy_and_download_the_output(page: Page, api: httpx.Client) -> None:
    job_id = generate(page, seed="the ", length=120, n=1)
    output = get_job(api, job_id)["output"]
    with page.expect_download() as download:
        page.click("#download-output")
    assert download.value.suggested_filename == f"lstmgen-{job_id}.txt"
    assert Path(download.value.path()).read_text(encoding="utf-8") == output
    page.click("#copy-output")
    expect(page.locator("#copy-state")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == output

    job_id = generate(page, seed="the ", length=120, n=2)
    outputs = get_job(api, job_id)["output"]
    with page.expect_download() as download:
        page.click("#download-output")  # the whole output: samples separated by a blank line
    assert download.value.suggested_filename == f"lstmgen-{job_id}.txt"
    assert Path(download.value.path()).read_text(encoding="utf-8") == "\n\n".join(outputs)
    second = page.locator(".pane").nth(1)
    with page.expect_download() as download:
        second.get_by_role("button", name="Download").click()
    assert download.value.suggested_filename == f"lstmgen-{job_id}-2.txt"
    assert Path(download.value.path()).read_text(encoding="utf-8") == outputs[1]
    second.get_by_role("button", name="Copy").click()
    expect(second.locator(".copy-state")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == outputs[1]


def test_copy_without_clipboard_access_says_how_instead(browser: Browser, stack: ApiHandle) -> None:
    context = browser.new_context()  # no clipboard permission: writeText is refused
    try:
        page = context.new_page()
        page.add_init_script("delete Navigator.prototype.clipboard")
        page.goto(stack.url)
        page.wait_for_selector("#model option[value='tiny']", state="attached")
        generate(page, seed="the ", length=20, n=1)
        page.click("#copy-output")
        expect(page.locator("#copy-state")).to_contain_text("press Ctrl+C")
    finally:
        context.close()
