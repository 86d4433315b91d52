"""The page's "Upload a model" panel in headless Chromium: a zipped model folder uploaded to a
worker that was running before, then generated from; a file that is not a model is refused
with the fault shown beside the file field."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.conftest import write_tiny_model
from tests.integration.conftest import ApiHandle, StartApi, StartWorker
from tests.integration.service.helpers import wait_status
from tests.integration.web.conftest import open_page

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker) -> ApiHandle:
    """Start a worker (serving `tiny` and every upload to come), then an open API."""
    start_worker(worker_models="tiny", worker_slots=4)
    return start_api(default_model="tiny")


@pytest.fixture
def page(browser: Browser, redis_client: redis.Redis) -> Iterator[Page]:
    """Open a fresh browser context over a flushed job store."""
    with open_page(browser) as opened:
        yield opened


def zipped_tiny_model(folder: Path) -> Path:
    """Write the `tiny` model's folder again (same weights) and zip it."""
    model = write_tiny_model(folder / "model", seed=0)
    archive = folder / "my-model.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        for file in sorted(model.iterdir()):
            bundle.write(file, file.name)
    return archive


def test_upload_then_generate(page: Page, stack: ApiHandle, tmp_path: Path) -> None:
    page.goto(stack.url)
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    page.fill("#upload-name", "page-upload")
    page.set_input_files("#upload-file", str(zipped_tiny_model(tmp_path)))
    page.fill("#upload-description", "uploaded from the page")
    page.click("#upload")
    expect(page.locator("#upload-state")).to_have_text("page-upload: ready to generate")
    expect(page.locator("#model")).to_have_value("page-upload")
    expect(page.locator("#model-props")).to_contain_text("33 characters")

    page.fill("#seed", "the ")
    page.fill("#length", "80")
    page.locator("#generate-form details summary").click()
    page.fill("#random_seed", "5")
    page.click("#generate")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    # The same weights under their directory name give the same text for the same input.
    api = stack.client()
    uploaded = api.get(f"/v1/jobs/{page.locator('#job-id').inner_text()}").json()
    assert uploaded["model"] == "page-upload"
    twin = api.post("/v1/jobs", json={**uploaded["input"], "model": "tiny"}).json()
    assert wait_status(api, twin["id"])["output"] == uploaded["output"]
    assert page.locator("#output-text").inner_text() == uploaded["output"]


def test_a_file_that_is_no_model_is_refused(page: Page, stack: ApiHandle, tmp_path: Path) -> None:
    page.goto(stack.url)
    page.wait_for_selector("#model option[value='tiny']", state="attached")
    fake = tmp_path / "weights.zip"
    fake.write_text("not a zip at all")
    page.fill("#upload-name", "not-a-model")
    page.set_input_files("#upload-file", str(fake))
    page.click("#upload")
    expect(page.locator("#error")).to_be_visible()
    expect(page.locator("#error-fields")).to_contain_text("file")
    expect(page.locator("#upload-file")).to_have_class("invalid")
    assert stack.client().get("/v1/models/not-a-model").status_code == 404
