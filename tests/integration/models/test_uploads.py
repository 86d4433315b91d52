"""Uploaded models end to end: real API, real worker started before the uploads, real Redis.

Each reference format is zipped and uploaded, then generated greedily by the worker that was
running all along, and compared with `lstmgen generate` on the folder itself. Hostile uploads
get a 4xx problem+json naming the fault and leave no key and no file behind; another key never
sees, uses, replaces or deletes a key's model.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import subprocess
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import redis

from tests.conftest import BIN, ROOT, TINY_VOCAB, wait_for, write_tiny_model
from tests.integration.conftest import (
    ApiHandle,
    StartApi,
    StartWorker,
    WorkerHandle,
    wait_running,
)
from tests.integration.service.helpers import check_problem, wait_status
from tests.unit.engine.factories import random_weights, write_ml5

KEYS = "alice:key-alice,bob:key-bob"
SEED = "the "
LENGTH = 120
LONG = 500_000  # a job ml5_darwin needs seconds for: it is seen running long before it can end
SMALL_LIMIT = 200_000  # bytes an upload may have on the small API
CATALOG_PATTERNS = ("lstmgen:model:*", "lstmgen:blob:*", "lstmgen:upload:*", "lstmgen:models")


@contextlib.contextmanager
def temp_dir_env(folder: Path) -> Iterator[None]:
    """Start processes with TMPDIR=folder (their temporary files land there)."""
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(folder)
    try:
        yield
    finally:
        if before is None:
            del os.environ["TMPDIR"]
        else:
            os.environ["TMPDIR"] = before


@pytest.fixture(scope="module")
def temp_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Return the TMPDIR of the worker and of the APIs, and the worker's model cache."""
    return {name: tmp_path_factory.mktemp(name) for name in ("worker-tmp", "api-tmp", "cache")}


@pytest.fixture(scope="module")
def worker(start_worker: StartWorker, temp_dirs: dict[str, Path]) -> WorkerHandle:
    """Start the one worker, serving `tiny` from its folder and every upload to come."""
    with temp_dir_env(temp_dirs["worker-tmp"]):
        return start_worker(
            worker_models="tiny", worker_slots=4, model_cache_dir=temp_dirs["cache"]
        )


@pytest.fixture(scope="module")
def stack(start_api: StartApi, worker: WorkerHandle, temp_dirs: dict[str, Path]) -> ApiHandle:
    """Start the API with two keys, after the worker."""
    with temp_dir_env(temp_dirs["api-tmp"]):
        return start_api(api_keys=KEYS, default_model="tiny", max_length=LONG)


@pytest.fixture(scope="module")
def small_stack(start_api: StartApi, worker: WorkerHandle, temp_dirs: dict[str, Path]) -> ApiHandle:
    """Start a second API whose uploads may have SMALL_LIMIT bytes."""
    with temp_dir_env(temp_dirs["api-tmp"]):
        return start_api(api_keys=KEYS, default_model="tiny", max_model_bytes=SMALL_LIMIT)


@pytest.fixture
def alice(stack: ApiHandle, redis_client: redis.Redis) -> httpx.Client:
    """Return key alice's client over a flushed store."""
    return stack.client("key-alice", timeout=120.0)


@pytest.fixture
def bob(stack: ApiHandle) -> httpx.Client:
    """Return key bob's client."""
    return stack.client("key-bob", timeout=120.0)


def zip_folder(folder: Path, *, top: str | None = None, skip: tuple[str, ...] = ()) -> bytes:
    """Return a zip of a folder's files (inside a top folder of that name, if given)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.iterdir()):
            if path.is_file() and path.name not in skip:
                archive.write(path, f"{top}/{path.name}" if top else path.name)
    return buffer.getvalue()


def zip_members(members: dict[str, bytes], **infos: int) -> bytes:
    """Return a zip of these members; `infos` sets a member's external attributes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.compress_type = zipfile.ZIP_DEFLATED
            if name in infos:
                info.external_attr = infos[name] << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def upload(
    api: httpx.Client, name: str, data: bytes, filename: str = "model.zip", **fields: Any
) -> httpx.Response:
    """POST a model (PUT with `method="put"`)."""
    method = fields.pop("method", "post")
    extra = fields.pop("files", {})
    files = {"file": (filename, data, "application/octet-stream"), **extra}
    if method == "put":
        return api.put(f"/v1/models/{name}", data=fields, files=files)
    return api.post("/v1/models", data={"name": name, **fields}, files=files)


def cli_greedy(model: Path, seed: str = SEED, length: int = LENGTH) -> str:
    """Return what `lstmgen generate` writes for a folder at temperature 0."""
    command = [str(BIN / "lstmgen"), "generate", str(model), "--seed", seed,
               "--length", str(length), "--temperature", "0", "--json"]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    text: str = json.loads(run.stdout)["text"]
    return text


def generate(api: httpx.Client, model: str, seed: str = SEED, length: int = LENGTH) -> str:
    """Return the text of a greedy job on `model`, once it succeeded."""
    body = {"model": model, "seed": seed, "length": length, "temperature": 0}
    response = api.post("/v1/jobs", json=body, headers={"Prefer": "wait=60"})
    assert response.status_code == 201, response.text
    job = wait_status(api, response.json()["id"], timeout=120)
    assert job["status"] == "succeeded", job
    output: str = job["output"]
    return output


def catalog_keys(client: redis.Redis) -> set[str]:
    """Return the catalog's keys, and the names in its index."""
    found = {str(k) for pattern in CATALOG_PATTERNS for k in client.scan_iter(match=pattern)}
    return found | {f"index:{name}" for name in client.smembers("lstmgen:models")}  # type: ignore[union-attr]


def leftover_files(temp_dirs: dict[str, Path]) -> list[str]:
    """Return the files the API and the worker left in their temporary folders and cache."""
    return sorted(str(p) for folder in temp_dirs.values() for p in folder.rglob("*"))


def lstm_model_creator_download(reference: Path, folder: Path) -> Path:
    """Lay a tfjs reference model out as lstm_model_creator's download: model.json,
    weights.bin and its charSet file."""
    folder.mkdir()
    (model_json,) = [p for p in reference.glob("*.json") if "modelTopology" in p.read_text()]
    topology = json.loads(model_json.read_text(encoding="utf-8"))
    for group in topology["weightsManifest"]:
        group["paths"] = ["weights.bin"]
    (folder / "model.json").write_text(json.dumps(topology), encoding="utf-8")
    (folder / "weights.bin").write_bytes(next(reference.glob("*.weights.bin")).read_bytes())
    chars = json.loads((reference / "charset.json").read_text(encoding="utf-8"))
    listed = ", ".join(json.dumps(c) for c in chars)
    (folder / "charSet.js").write_text(f"const charSet = [{listed}];\n", encoding="utf-8")
    return folder


REFERENCES = {
    "ml5": ("ml5_darwin", "The sun "),
    "tfjs": ("jessvb_nietzsche", "the "),
    "tfjs-shards": ("reiinakano_nietzsche", "the "),
}


@pytest.mark.parametrize("kind", [*REFERENCES, "lstm_model_creator", "keras", "keras-file"])
def test_each_format_uploaded_is_generated_by_the_running_worker_as_the_cli_does(
    alice: httpx.Client,
    worker: WorkerHandle,
    shared_dir: Path,
    tmp_path: Path,
    kind: str,
) -> None:
    pid = worker.process.pid
    seed = "the "
    if kind in REFERENCES:
        folder, seed = shared_dir / "models" / REFERENCES[kind][0], REFERENCES[kind][1]
        response = upload(alice, f"up-{kind}", zip_folder(folder, top=folder.name))
    elif kind == "lstm_model_creator":
        folder = lstm_model_creator_download(
            shared_dir / "models" / "jessvb_nietzsche", tmp_path / "m"
        )
        response = upload(alice, f"up-{kind}", zip_folder(folder))
    else:
        folder, seed = ROOT / "models" / "default", "def "
        if kind == "keras":
            response = upload(alice, f"up-{kind}", zip_folder(folder), description="ours")
        else:
            vocab = ("vocab.json", (folder / "vocab.json").read_bytes(), "application/json")
            keras = (folder / "model.keras").read_bytes()
            response = upload(alice, f"up-{kind}", keras, "model.keras", files={"vocab": vocab})
    assert response.status_code == 201, response.text
    info = response.json()
    assert info["name"] == f"up-{kind}" and info["origin"] == "upload"
    assert len(info["digest"]) == 64 and info["size"] > 0
    assert response.headers["location"] == f"/v1/models/up-{kind}"
    assert alice.get(f"/v1/models/up-{kind}").json() == info
    expected = cli_greedy(folder, seed)
    assert generate(alice, f"up-{kind}", seed) == expected
    assert worker.process.pid == pid and worker.alive()  # never restarted


def test_a_deleted_model_finishes_its_running_job_and_refuses_new_ones(
    alice: httpx.Client, worker: WorkerHandle, shared_dir: Path, redis_client: redis.Redis
) -> None:
    folder = shared_dir / "models" / "ml5_darwin"
    assert upload(alice, "doomed", zip_folder(folder)).status_code == 201
    body = {"model": "doomed", "seed": "The ", "length": LONG, "temperature": 0}
    job = alice.post("/v1/jobs", json=body).json()
    wait_running(redis_client, job["id"])
    with worker.paused():  # the job cannot finish before the model is deleted
        assert alice.delete("/v1/models/doomed").status_code == 204
        check_problem(alice.get("/v1/models/doomed"), 404)
        check_problem(alice.post("/v1/jobs", json={**body, "length": 5}), 422, "model")
        check_problem(alice.delete("/v1/models/doomed"), 404)
    assert catalog_keys(redis_client) == set()  # the blob went with its last model
    done = wait_status(alice, job["id"], timeout=120)
    assert done["status"] == "succeeded" and len(done["output"]) == LONG
    # Greedy text of a stateful model: its start is the text of a shorter run.
    assert done["output"].startswith(cli_greedy(folder, "The ", 2000))


def test_put_replaces_and_new_jobs_run_the_new_version(
    alice: httpx.Client, worker: WorkerHandle, shared_dir: Path, redis_client: redis.Redis
) -> None:
    darwin, dubois = shared_dir / "models" / "ml5_darwin", shared_dir / "models" / "ml5_dubois"
    created = upload(alice, "mine", zip_folder(darwin), method="put")
    assert created.status_code == 201, created.text
    assert generate(alice, "mine", "The ") == cli_greedy(darwin, "The ")
    check_problem(upload(alice, "mine", zip_folder(dubois)), 409, "name")
    replaced = upload(alice, "mine", zip_folder(dubois), method="put", description="v2")
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["description"] == "v2"
    assert replaced.json()["digest"] != created.json()["digest"]
    assert generate(alice, "mine", "The ") == cli_greedy(dubois, "The ")
    old = f"batch loop of mine@{created.json()['digest']} stopped"
    wait_for(lambda: old in worker.log(), 30, "the old version's loop to stop")
    blobs = {str(k) for k in redis_client.scan_iter(match="lstmgen:blob:*")}
    digest = replaced.json()["digest"]
    assert blobs == {f"lstmgen:blob:{digest}", f"lstmgen:blob:{digest}:refs"}  # the old one went


def test_other_keys_never_see_use_replace_or_delete_a_keys_model(
    alice: httpx.Client, bob: httpx.Client, shared_dir: Path
) -> None:
    folder = shared_dir / "models" / "ml5_darwin"
    assert upload(alice, "alices", zip_folder(folder)).status_code == 201
    assert "alices" in [m["name"] for m in alice.get("/v1/models").json()["models"]]
    assert "alices" not in [m["name"] for m in bob.get("/v1/models").json()["models"]]
    assert "tiny" in [m["name"] for m in bob.get("/v1/models").json()["models"]]  # shared
    check_problem(bob.get("/v1/models/alices"), 404)
    check_problem(bob.delete("/v1/models/alices"), 404)
    body = {"model": "alices", "seed": "The ", "length": 5}
    check_problem(bob.post("/v1/jobs", json=body), 422, "model")
    check_problem(upload(bob, "alices", zip_folder(folder), method="put"), 409, "name")
    check_problem(upload(bob, "alices", zip_folder(folder)), 409, "name")
    check_problem(upload(bob, "tiny", zip_folder(folder)), 409, "name")
    check_problem(bob.delete("/v1/models/tiny"), 409)
    assert alice.get("/v1/models/alices").status_code == 200  # untouched
    assert generate(alice, "alices", "The ", 20) == cli_greedy(folder, "The ", 20)


def _vocab_model(folder: Path, size: int) -> Path:
    vocab = [chr(0x4E00 + i) for i in range(size)]
    return write_ml5(folder, random_weights(np.random.default_rng(1), size, [8], 4), vocab)


def _bad_shapes(folder: Path) -> Path:
    write_tiny_model(folder)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    units = 32
    wrong = np.zeros((units + 1, len(TINY_VOCAB)), "<f4")  # one row too many
    manifest["rnnlm/softmax_w"]["shape"] = list(wrong.shape)
    (folder / manifest["rnnlm/softmax_w"]["filename"]).write_bytes(wrong.tobytes())
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return folder


def _hostile(kind: str, tmp_path: Path) -> tuple[bytes, int, str]:
    """Return an upload's bytes, the status it must get and a word its message must hold."""
    link = stat.S_IFLNK | 0o777
    tiny = write_tiny_model(tmp_path / "tiny")
    if kind == "not a zip":
        return b"PK\x03\x04 this is no archive" * 10, 422, "not a zip"
    if kind == "zip bomb":
        return zip_members({"manifest.json": b"{}", "bomb": bytes(20 * 2**20)}), 422, "bomb"
    if kind == "dot-dot":
        return zip_members({"../evil.json": b"{}"}), 422, "'..'"
    if kind == "absolute":
        return zip_members({"/etc/evil.json": b"{}"}), 422, "absolute"
    if kind == "symlink":
        return zip_members({"vocab.json": b"/etc/passwd"}, **{"vocab.json": link}), 422, "link"
    if kind == "too many files":
        return zip_members({f"f{i}.txt": b"x" for i in range(100)}), 422, "members"
    if kind == "missing file":
        return zip_folder(tiny, skip=("rnnlm_softmax_b",)), 422, "not found"
    if kind == "shapes disagree":
        return zip_folder(_bad_shapes(tmp_path / "bad")), 422, "output kernel"
    if kind == "too many characters":
        return zip_folder(_vocab_model(tmp_path / "wide", 1100)), 422, "1100 characters"
    raise AssertionError(kind)


HOSTILE = [
    "not a zip", "zip bomb", "dot-dot", "absolute", "symlink", "too many files", "missing file",
    "shapes disagree", "too many characters",
]  # fmt: skip


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_uploads_get_a_problem_naming_the_fault_and_leave_nothing(
    alice: httpx.Client,
    redis_client: redis.Redis,
    temp_dirs: dict[str, Path],
    tmp_path: Path,
    kind: str,
) -> None:
    before_keys, before_files = catalog_keys(redis_client), leftover_files(temp_dirs)
    data, status, word = _hostile(kind, tmp_path)
    problem = check_problem(upload(alice, "hostile", data), status, "file")
    assert word in problem["detail"], problem
    check_problem(alice.get("/v1/models/hostile"), 404)
    assert catalog_keys(redis_client) == before_keys
    assert leftover_files(temp_dirs) == before_files


def test_uploads_past_the_size_limit_get_413_and_leave_nothing(
    small_stack: ApiHandle, redis_client: redis.Redis, temp_dirs: dict[str, Path], shared_dir: Path
) -> None:
    api = small_stack.client("key-alice")
    before_keys, before_files = catalog_keys(redis_client), leftover_files(temp_dirs)
    big = zip_folder(shared_dir / "models" / "ml5_darwin")  # 1 MB > SMALL_LIMIT
    check_problem(upload(api, "big", big), 413, "file")
    unpacks = zip_members({"manifest.json": b"{}", "text.txt": b"a" * (SMALL_LIMIT + 1)})
    assert len(unpacks) < SMALL_LIMIT
    problem = check_problem(upload(api, "unpacks", unpacks), 413, "file")
    assert "unpacks to" in problem["detail"]
    assert catalog_keys(redis_client) == before_keys
    assert leftover_files(temp_dirs) == before_files


def test_bad_forms_get_problems_naming_the_field(alice: httpx.Client) -> None:
    check_problem(alice.post("/v1/models", json={"name": "x"}), 415)
    check_problem(
        alice.post("/v1/models", data={"name": "x"}, files={"other": ("a", b"")}), 422, "file"
    )
    check_problem(upload(alice, "../x", b"zip"), 422, "name")
    check_problem(upload(alice, "x", b"zip", "model.tar"), 422, "file")
    check_problem(upload(alice, "x", b"zip", "model.keras"), 422, "vocab")
    check_problem(upload(alice, "x", b"zip", description="d" * 2000), 422, "description")


def lstmgen(stack: ApiHandle, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a `lstmgen` client verb against the stack as key alice."""
    command = [str(BIN / "lstmgen"), *args, "--url", stack.url, "--api-key", "key-alice"]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_the_cli_uploads_lists_and_deletes_a_folder(
    stack: ApiHandle, alice: httpx.Client, shared_dir: Path
) -> None:
    folder = shared_dir / "models" / "jessvb_drseuss-20"
    uploaded = lstmgen(stack, "models", "upload", "seuss", str(folder), "--description", "hats")
    assert uploaded.returncode == 0, uploaded.stderr
    assert uploaded.stdout.startswith("seuss uploaded (tfjs, sha256 ")
    listed = lstmgen(stack, "models")
    assert any(line.split()[:2] == ["seuss", "tfjs"] for line in listed.stdout.splitlines())
    assert alice.get("/v1/models/seuss").json()["description"] == "hats"
    assert generate(alice, "seuss", "the ") == cli_greedy(folder, "the ")
    again = lstmgen(stack, "models", "upload", "seuss", str(folder))
    assert again.returncode == 2 and "409" in again.stderr
    assert lstmgen(stack, "models", "upload", "seuss", str(folder), "--replace").returncode == 0
    deleted = lstmgen(stack, "models", "delete", "seuss")
    assert deleted.returncode == 0 and deleted.stdout.strip() == "seuss deleted"
    gone = lstmgen(stack, "models", "delete", "seuss")
    assert gone.returncode == 2 and "404" in gone.stderr


def test_schemathesis_finds_no_server_error_on_the_model_operations(
    stack: ApiHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    command = [
        str(BIN / "schemathesis"), "run", f"{stack.url}/openapi.json",
        "--header", "Authorization: Bearer key-bob",
        "--include-operation-id", "uploadModel",
        "--include-operation-id", "putModel",
        "--include-operation-id", "deleteModel",
        "--include-operation-id", "getModel",
        "--include-operation-id", "listModels",
        "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
        "response_schema_conformance",
        "--phases", "examples,coverage,fuzzing",
        "--max-examples", "25",
        "--seed", "20261202",
        "--workers", "1",
        "--request-timeout", "60",
        "--generation-database", "none",
        "--suppress-health-check", "all",
        "--no-color",
    ]  # fmt: skip
    run = subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False
    )
    output = run.stdout + run.stderr
    print(output)
    assert run.returncode == 0, f"{output[-8000:]}\nAPI log:\n{stack.log()[-4000:]}"
    assert " passed" in output, output[-4000:]


def test_an_upload_no_replica_confirms_is_503_as_a_job_would_be(
    start_api: StartApi, worker: WorkerHandle, redis_client: redis.Redis, tmp_path: Path
) -> None:
    api = start_api(api_keys=KEYS, redis_min_replicas=1, redis_replica_timeout_s=0.2)
    folder = write_tiny_model(tmp_path / "tiny")
    problem = check_problem(upload(api.client("key-alice"), "unconfirmed", zip_folder(folder)), 503)
    assert "replicas" in problem["detail"]


def cli_predict(model: Path, seed: str, temperature: float) -> list[dict[str, Any]]:
    """Return what `lstmgen predict` writes for a folder."""
    command = [str(BIN / "lstmgen"), "predict", str(model), "--seed", seed,
               "--temperature", str(temperature), "--json"]  # fmt: skip
    run = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True, timeout=300)
    found: list[dict[str, Any]] = json.loads(run.stdout)["probabilities"]
    return found


def test_predict_on_an_upload_is_what_lstmgen_predict_gives_on_its_folder(
    alice: httpx.Client, bob: httpx.Client, tmp_path: Path
) -> None:
    first = write_tiny_model(tmp_path / "first", seed=11)
    second = write_tiny_model(tmp_path / "second", seed=12)
    assert upload(alice, "oracle", zip_folder(first)).status_code == 201
    body = {"seed": "the cat", "temperature": 0.7}
    answer = alice.post("/v1/models/oracle/predict", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["probabilities"] == cli_predict(first, "the cat", 0.7)
    top = alice.post("/v1/models/oracle/predict", json={**body, "top": 3}).json()
    assert top["probabilities"] == answer.json()["probabilities"][:3]
    assert bob.post("/v1/models/oracle/predict", json=body).status_code == 404

    assert upload(alice, "oracle", zip_folder(second), method="put").status_code == 200
    replaced = alice.post("/v1/models/oracle/predict", json=body)
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["probabilities"] == cli_predict(second, "the cat", 0.7)
    assert replaced.json()["probabilities"] != answer.json()["probabilities"]
    refused = alice.post("/v1/models/oracle/predict", json={"seed": "THE"})
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "seed"
