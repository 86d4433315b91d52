"""The page's "Train a model" panel in headless Chromium against a real API, a real training
worker and a real generation worker: a pasted corpus trains a tiny network whose loss curve is
drawn and whose model is selected and generated from; a file is read by the page and its
training canceled; a bad field is refused with the API's words beside that field."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from playwright.sync_api import Browser, Page, expect

from tests.integration.conftest import (
    ApiHandle,
    ServiceProcess,
    StartApi,
    StartTrainingWorker,
    StartWorker,
    WorkerHandle,
)
from tests.integration.web.conftest import open_page

pytestmark = [pytest.mark.browser, pytest.mark.tensorflow]

KEY = "train-key"
CORPUS = "the quick brown fox jumps over the lazy dog. " * 80  # 3.6 KB, 28 characters
TRAIN_TIMEOUT_MS = 240_000  # TensorFlow's first import and one epoch on a shared 2-core machine
INVALID = re.compile(r"\binvalid\b")


@pytest.fixture(scope="module")
def worker(start_worker: StartWorker) -> WorkerHandle:
    """Start a generation worker for `tiny` and every trained model."""
    return start_worker(worker_models="tiny", worker_slots=4)


@pytest.fixture(scope="module")
def trainer(start_training_worker: StartTrainingWorker) -> ServiceProcess:
    """Start the training worker, writing progress often."""
    return start_training_worker(training_progress_interval_s=0.05)


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle, trainer: ServiceProcess) -> ApiHandle:
    """Start an API with one key, after the workers."""
    return start_api(api_keys=f"trainer:{KEY}", default_model="tiny")


@pytest.fixture
def page(browser: Browser, stack: ApiHandle, redis_client: redis.Redis) -> Iterator[Page]:
    """Open the page with the key saved, over a flushed store."""
    with open_page(browser) as opened:
        opened.goto(stack.url)
        opened.fill("#api-key", KEY)
        opened.click("#key-form button")
        opened.wait_for_selector("#model option[value='tiny']", state="attached")
        yield opened


def fill_tiny_network(page: Page, name: str, epochs: int = 1) -> None:
    """Ask for a tiny, quick network (the settings of the trainings' own tests)."""
    page.fill("#train-name", name)
    page.fill("#train-layers", "32")
    page.fill("#train-epochs", str(epochs))
    page.locator(".train details summary").click()
    page.fill("#train-seq_len", "16")
    page.fill("#train-batch_size", "32")


def drawn_points(page: Page) -> list[dict[str, Any]]:
    """Return the dots the page says it drew, each with the canvas's color at its centre."""
    points: list[dict[str, Any]] = json.loads(
        page.locator("#train-curve").get_attribute("data-points") or "[]"
    )
    pixels = page.evaluate(
        """(points) => {
            const canvas = document.getElementById("train-curve");
            const ratio = canvas.width / canvas.clientWidth;
            const context = canvas.getContext("2d");
            const at = (x, y) => context.getImageData(Math.floor(x), Math.floor(y), 1, 1).data;
            return points.map(({ x, y }) => Array.from(at(x * ratio, y * ratio)));
        }""",
        points,
    )
    return [{**point, "rgba": rgba} for point, rgba in zip(points, pixels, strict=True)]


def hex_rgb(color: str) -> tuple[int, int, int]:
    """Return the red, green and blue of `#rrggbb`."""
    return int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16)


def test_a_pasted_text_trains_a_model_that_is_drawn_selected_and_generates(
    page: Page, stack: ApiHandle
) -> None:
    page.fill("#train-text", CORPUS)
    fill_tiny_network(page, "page-fox")
    page.click("#train")
    expect(page.locator("#train-cancel")).to_be_enabled()
    expect(page.locator("#train-status")).to_have_text("succeeded", timeout=TRAIN_TIMEOUT_MS)
    expect(page.locator("#train-progress-text")).to_contain_text("page-fox: ready to generate")
    expect(page.locator("#train-cancel")).to_be_disabled()

    training = stack.client(KEY).get(f"/v1/trainings/{page.locator('#train-id').inner_text()}")
    [epoch] = training.json()["metrics"]
    progress = training.json()["progress"]
    steps = progress["steps"]
    expect(page.locator("#train-progress-text")).to_contain_text(f"step {steps} of {steps}")
    points = drawn_points(page)
    assert [(p["series"], p["epoch"], p["loss"]) for p in points] == [
        ("training", 1, epoch["loss_bpc"]),
        ("validation", 1, epoch["val_loss_bpc"]),
    ]
    series_colors = {hex_rgb(p["color"]) for p in points}
    for point in points:  # a dot is at each place the page names (one may cover the other)
        assert tuple(point["rgba"][:3]) in series_colors and point["rgba"][3] == 255, point

    expect(page.locator("#model")).to_have_value("page-fox")
    expect(page.locator("#model-props")).to_contain_text("32 units")
    page.fill("#seed", "the ")
    page.fill("#length", "40")
    page.click("#generate")
    expect(page.locator("#job-status")).to_have_text("succeeded")
    assert len(page.locator("#output-text").inner_text()) == 40
    job = stack.client(KEY).get(f"/v1/jobs/{page.locator('#job-id').inner_text()}").json()
    assert job["model"] == "page-fox"


def test_a_file_is_read_by_the_page_and_its_training_canceled(
    page: Page, stack: ApiHandle, tmp_path: Path
) -> None:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(CORPUS, encoding="utf-8")
    page.set_input_files("#train-file", str(corpus))
    expect(page.locator("#train-file-note")).to_be_visible()
    fill_tiny_network(page, "page-canceled", epochs=100)
    page.fill("#train-seq_len", "8")
    page.fill("#train-batch_size", "1")  # hundreds of steps an epoch: still running when canceled
    page.click("#train")
    expect(page.locator("#train-progress-text")).to_contain_text(
        re.compile(r"step [1-9]\d* of"), timeout=TRAIN_TIMEOUT_MS
    )
    training_id = page.locator("#train-id").inner_text()
    assert stack.client(KEY).get(f"/v1/trainings/{training_id}").json()["params"]["chars"] == len(
        CORPUS
    )
    page.click("#train-cancel")
    expect(page.locator("#train-status")).to_have_text("canceled", timeout=60_000)
    expect(page.locator("#train")).to_be_enabled()
    expect(page.locator("#error")).to_be_hidden()
    assert stack.client(KEY).get("/v1/models/page-canceled").status_code == 404


def test_a_bad_field_shows_the_api_error_beside_it(page: Page) -> None:
    page.fill("#train-text", CORPUS)
    fill_tiny_network(page, "page-bad", epochs=0)
    page.click("#train")
    expect(page.locator("#error-fields")).to_contain_text("epochs")
    expect(page.locator("#train-epochs")).to_have_class(INVALID)
    note = page.locator(".field-error[data-for='train-epochs']")
    expect(note).to_contain_text("greater than or equal to 1")
    expect(page.locator("#train-status")).to_have_text("idle")
    page.fill("#train-epochs", "1")
    expect(page.locator("#train-epochs")).not_to_have_class(INVALID)
    expect(note).to_have_count(0)

    # `name` is also the upload form's: a taken name is marked in the training form only.
    page.fill("#train-name", "tiny")
    page.click("#train")
    expect(page.locator(".field-error[data-for='train-name']")).to_contain_text("in use")
    expect(page.locator("#train-name")).to_have_class(INVALID)
    expect(page.locator("#upload-name")).not_to_have_class(INVALID)
