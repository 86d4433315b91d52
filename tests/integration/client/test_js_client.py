"""The JavaScript client (api/static/lstmgen.js): `node --test tests/js/` against the real stack."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import redis

from tests.conftest import ROOT
from tests.integration.conftest import ApiHandle, StartApi, StartWorker

JS_TESTS = ROOT / "tests" / "js"
KEY = "js-key"
NODE_TIMEOUT_S = 300.0


@pytest.fixture(scope="module")
def node() -> Path:
    """Return the `node` executable; skip without it, but fail in CI where it must be present."""
    found = shutil.which("node")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("node is missing (CI=true needs Node.js 18+ for the JavaScript client)")
        pytest.skip("node is missing: the JavaScript client tests need Node.js 18+")
    return Path(found)


@pytest.fixture(scope="module")
def stack(start_api: StartApi, start_worker: StartWorker) -> ApiHandle:
    """Start one worker serving `tiny` and an open API."""
    start_worker(worker_models="tiny")
    return start_api()


@pytest.fixture(scope="module")
def keyed_stack(stack: ApiHandle, start_api: StartApi) -> ApiHandle:
    """Start a second API, on the same Redis and worker, that requires an API key."""
    return start_api(api_keys=KEY)


def node_test(node: Path, url: str, *paths: Path, api_key: str | None = None) -> str:
    """Run `node --test PATHS` against the API at `url`; fail with node's output unless it
    passes; return that output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LSTMGEN_")}
    env.update(LSTMGEN_URL=url, LSTMGEN_MODEL="tiny")
    if api_key is not None:
        env["LSTMGEN_API_KEY"] = api_key
    command = [str(node), "--test", "--test-reporter=spec", *(str(path) for path in paths)]
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=NODE_TIMEOUT_S
    )
    output = f"{done.stdout}\n{done.stderr}"
    assert done.returncode == 0, f"{' '.join(command)} exited {done.returncode}:\n{output}"
    counts = dict(re.findall(r"^ℹ (pass|fail) (\d+)$", done.stdout, re.MULTILINE))
    assert counts.get("fail") == "0" and int(counts.get("pass", "0")) > 0, output
    return output


def test_the_js_client_against_the_open_api(
    node: Path, stack: ApiHandle, redis_client: redis.Redis
) -> None:
    output = node_test(node, stack.url, JS_TESTS)
    assert "# LSTMGEN_API_KEY is not set" in output  # auth.test.mjs needs the keyed API


def test_the_js_client_with_an_api_key(
    node: Path, keyed_stack: ApiHandle, redis_client: redis.Redis
) -> None:
    # Every client test again with the key sent, then the key checks (wrong key: 401).
    output = node_test(node, keyed_stack.url, JS_TESTS, api_key=KEY)
    assert "# LSTMGEN" not in output, f"a test file was skipped:\n{output}"
    assert "✔ lstmgen.js client with API keys" in output, output
