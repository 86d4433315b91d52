"""The example sketch (api/static/examples/) in headless Chromium, served from other origins."""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import redis
from playwright.sync_api import Browser, ConsoleMessage, Page, Route, expect

from tests.conftest import ROOT, wait_for
from tests.integration.conftest import ApiHandle, StartApi, StartWorker
from tests.integration.web.conftest import open_page

pytestmark = pytest.mark.browser

EXAMPLES = ROOT / "api" / "static" / "examples"
# What the API sends with its own pages: the sketch must work under it.
CSP = "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'"
CANVAS_DATA_URL = "() => document.getElementById('canvas').toDataURL()"
BLANK_DATA_URL = """() => {
  const shown = document.getElementById('canvas');
  const blank = document.createElement('canvas');
  blank.width = shown.width;
  blank.height = shown.height;
  return blank.toDataURL();
}"""


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Keep the test output clean."""


@dataclass
class StaticSite:
    """The example folder served by http.server on its own loopback port: another origin."""

    server: ThreadingHTTPServer = field(init=False)

    def __post_init__(self) -> None:
        handler = functools.partial(_QuietHandler, directory=str(EXAMPLES))
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def origin(self) -> str:
        """Return the site's origin (scheme, host and port)."""
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def sketch(self, **params: str) -> str:
        """Return the URL of the sketch with these query parameters."""
        return f"{self.origin}/sketch.html?{urlencode(params)}"

    def stop(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def site() -> Iterator[StaticSite]:
    """Serve the examples from an origin the API allows."""
    served = StaticSite()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def other_site() -> Iterator[StaticSite]:
    """Serve the examples from an origin the API does not allow."""
    served = StaticSite()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker, site: StaticSite) -> ApiHandle:
    """Start one worker serving `tiny` and an open API that allows the first site's origin."""
    start_worker(worker_models="tiny")
    return start_api(cors_origins=site.origin)


@pytest.fixture
def page(browser: Browser, redis_client: redis.Redis) -> Iterator[Page]:
    """Open a fresh browser context over a flushed job store; fail on JavaScript errors."""
    with open_page(browser, viewport={"width": 1000, "height": 900}) as opened:
        yield opened


def job_of(stack: ApiHandle, job_id: str) -> dict[str, Any]:
    """Return the job as the API shows it."""
    response = stack.client().get(f"/v1/jobs/{job_id}")
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_until_ready(page: Page) -> None:
    """Wait until the sketch has loaded the client and the model."""
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")
    expect(page.locator("#generate")).to_be_enabled()


def test_generate_streams_the_text_onto_the_canvas_from_another_origin(
    page: Page, stack: ApiHandle, site: StaticSite
) -> None:
    page.goto(site.sketch(api=stack.url, model="tiny"))
    wait_until_ready(page)
    expect(page.locator("#model-name")).to_contain_text("tiny (33 characters, 1 layer(s))")
    expect(page.locator("#text")).to_be_hidden()
    empty = page.evaluate(CANVAS_DATA_URL)  # the sketch's background, no text yet

    page.fill("#seed", "the ")
    page.fill("#length", "600")
    page.locator("#temperature").fill("0.8")
    expect(page.locator("#temperature-value")).to_have_text("0.80")
    page.click("#generate")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "succeeded", timeout=60_000)
    job_id = status.get_attribute("data-job-id") or ""
    expect(status).to_contain_text(f"Job {job_id}: succeeded (600 characters)")

    job = job_of(stack, job_id)
    assert job["status"] == "succeeded" and job["input"]["seed"] == "the "
    assert job["input"]["length"] == 600 and job["input"]["temperature"] == 0.8
    assert len(job["output"]) == 600
    assert page.locator("#text").text_content() == job["output"]
    blank = page.evaluate(BLANK_DATA_URL)
    drawn = wait_for(lambda: page.evaluate(CANVAS_DATA_URL) != empty, 10, "text on the canvas")
    assert drawn and page.evaluate(CANVAS_DATA_URL) not in (empty, blank)
    expect(page.locator("#generate")).to_be_enabled()


def test_quick_generate_on_the_page_the_api_serves_under_its_csp(
    page: Page, stack: ApiHandle
) -> None:
    def with_csp(route: Route) -> None:
        response = route.fetch()
        route.fulfill(
            response=response, headers={**response.headers, "content-security-policy": CSP}
        )

    violations: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            violations.append(message.text)

    page.on("console", on_console)
    page.route("**/sketch.html*", with_csp)
    first = stack.client().get("/v1/models").json()["models"][0]["name"]
    opened = page.goto(f"{stack.url}/web/examples/sketch.html")  # default API: its origin
    assert opened is not None and opened.headers["content-security-policy"] == CSP
    expect(page.locator("#status")).to_have_attribute("data-state", "ready")
    expect(page.locator("#model-name")).to_contain_text(f"{first} (")  # default: the first model
    expect(page.locator("#api-url")).to_have_text(stack.url)

    page.goto(f"{stack.url}/web/examples/sketch.html?model=tiny")
    wait_until_ready(page)
    page.fill("#seed", "a")
    page.fill("#length", "50")
    page.click("#quick")
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "succeeded", timeout=60_000)
    job_id = status.get_attribute("data-job-id") or ""
    expect(status).to_contain_text(f"Quick: Job {job_id}: succeeded")
    job = job_of(stack, job_id)
    assert len(job["output"]) == 50
    assert page.locator("#text").text_content() == job["output"]

    page.fill("#length", "0")  # the API's 422 is shown in plain words
    page.click("#quick")
    expect(status).to_have_attribute("data-state", "error")
    expect(status).to_contain_text("Invalid request (422)")
    expect(status).to_contain_text("length")
    assert violations == []


def test_an_origin_the_api_does_not_allow_is_refused_by_the_browser(
    page: Page, stack: ApiHandle, other_site: StaticSite
) -> None:
    page.goto(other_site.sketch(api=stack.url, model="tiny"))
    status = page.locator("#status")
    expect(status).to_have_attribute("data-state", "error")
    expect(status).to_contain_text("Cannot reach the server")
    expect(status).to_contain_text(f"is this page's origin, {other_site.origin}")
    expect(page.locator("#generate")).to_be_disabled()
    # The API answers, but not for that origin (the client module itself is for anyone).
    refused = httpx.get(f"{stack.url}/v1/models/tiny", headers={"Origin": other_site.origin})
    assert refused.status_code == 200
    assert "access-control-allow-origin" not in refused.headers
    module = httpx.get(f"{stack.url}/lstmgen.js", headers={"Origin": other_site.origin})
    assert module.headers["access-control-allow-origin"] in ("*", other_site.origin)
    assert module.text == (ROOT / "api" / "static" / "lstmgen.js").read_text(encoding="utf-8")
