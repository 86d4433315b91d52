"""The catalog's scripts over a real Redis: publish, replace, delete, blobs by digest."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from scripts.redis_server import RedisServer
from shared.catalog.archive import ArchiveError, ArchiveLimits
from shared.catalog.catalog import ModelCatalog, PublishOutcome
from shared.catalog.keys import blob_key, staging_key
from shared.catalog.publish import publish_folder
from shared.catalog.records import ModelInfo, ModelSource

PROPERTIES = {
    "name": "m",
    "format": "ml5",
    "mode": "stateful",
    "vocab": ["a", "b", " "],
    "layer_sizes": [8],
    "defaults": {"seed": "a", "length": 20, "temperature": 0.5},
    "source": "/tmp/somewhere",
}


@pytest.fixture
def catalog(redis_server: RedisServer, redis_client: redis.Redis) -> Iterator[ModelCatalog]:
    found = ModelCatalog.from_url(redis_server.url)
    yield found
    found.close()


def info(name: str, owner: str = "alice") -> ModelInfo:
    return ModelInfo.from_properties(PROPERTIES).renamed(name, owner=owner)


def keys(client: redis.Redis) -> set[str]:
    return {str(key) for key in client.scan_iter(match="lstmgen:*")}


def test_a_published_upload_is_its_owners_alone(catalog: ModelCatalog) -> None:
    staged = catalog.stage(io.BytesIO(b"archive"), 100, 60)
    model = info("m").renamed("m", digest=staged.digest, size=staged.size)
    assert catalog.publish(model, staged, replace=False) is PublishOutcome.CREATED
    assert catalog.uploaded("m", "alice") == model
    assert catalog.uploaded("m", "bob") is None
    assert [i.name for i in catalog.uploads_of("alice")] == ["m"] and catalog.uploads_of(
        "bob"
    ) == []
    sink = io.BytesIO()
    assert catalog.read_blob(staged.digest, sink) and sink.getvalue() == b"archive"
    assert "source" not in model.properties and model.encode_seed("ab") == [0, 1]


def test_names_in_use_are_refused_and_leave_no_staged_archive(
    catalog: ModelCatalog, redis_client: redis.Redis
) -> None:
    first = catalog.stage(io.BytesIO(b"one"), 100, 60)
    catalog.publish(info("m").renamed("m", digest=first.digest), first, replace=False)
    for owner, replace, outcome in (
        ("alice", False, PublishOutcome.EXISTS),
        ("bob", False, PublishOutcome.TAKEN),
        ("bob", True, PublishOutcome.TAKEN),
    ):
        staged = catalog.stage(io.BytesIO(b"two"), 100, 60)
        model = info("m", owner).renamed("m", digest=staged.digest)
        assert catalog.publish(model, staged, replace=replace) is outcome
        assert not redis_client.exists(staging_key(staged.token))
    assert catalog.uploaded("m", "alice") is not None


def test_replacing_and_deleting_drop_blobs_no_model_uses(
    catalog: ModelCatalog, redis_client: redis.Redis
) -> None:
    one = catalog.stage(io.BytesIO(b"one"), 100, 60)
    catalog.publish(info("a").renamed("a", digest=one.digest), one, replace=False)
    same = catalog.stage(io.BytesIO(b"one"), 100, 60)  # the same bytes: one blob for both
    catalog.publish(info("b").renamed("b", digest=same.digest), same, replace=False)
    two = catalog.stage(io.BytesIO(b"two"), 100, 60)
    outcome = catalog.publish(info("a").renamed("a", digest=two.digest), two, replace=True)
    assert outcome is PublishOutcome.REPLACED
    assert redis_client.exists(blob_key(one.digest))  # b still uses it
    assert not catalog.delete("b", "bob") and catalog.delete("b", "alice")
    assert not redis_client.exists(blob_key(one.digest))
    assert catalog.delete("a", "alice")
    assert keys(redis_client) == set()


def test_a_directory_model_keeps_its_name_from_uploads(catalog: ModelCatalog) -> None:
    assert catalog.publish_directory(info("d", owner="x"))
    found = catalog.get("d")
    assert found is not None and found.source is ModelSource.DIRECTORY and found.owner == ""
    staged = catalog.stage(io.BytesIO(b"z"), 100, 60)
    model = info("d").renamed("d", digest=staged.digest)
    assert catalog.publish(model, staged, replace=True) is PublishOutcome.TAKEN
    assert not catalog.delete("d", "")


def test_staging_past_the_limit_leaves_nothing(
    catalog: ModelCatalog, redis_client: redis.Redis
) -> None:
    with pytest.raises(ArchiveError) as caught:
        catalog.stage(io.BytesIO(b"x" * 3 * 2**20), 2**20, 60)
    assert caught.value.status == 413
    assert keys(redis_client) == set()


def test_a_folder_is_published_in_one_call(catalog: ModelCatalog, model_dir: Path) -> None:
    limits = ArchiveLimits(2**20, 16, 100.0)
    found, outcome = publish_folder(
        catalog, "trained", model_dir / "tiny", owner="alice", limits=limits, max_vocab=100
    )
    assert outcome is PublishOutcome.CREATED and catalog.uploaded("trained", "alice") == found
    assert found.format == "ml5" and found.layers == (32,) and len(found.digest) == 64
    with pytest.raises(ArchiveError) as caught:
        publish_folder(
            catalog, "trained", model_dir / "tiny2", owner="bob", limits=limits, max_vocab=100
        )
    assert caught.value.status == 409
    with pytest.raises(ArchiveError, match="more than 10"):
        publish_folder(catalog, "wide", model_dir / "tiny", owner="a", limits=limits, max_vocab=10)


def test_a_verdict_is_awaited_until_it_comes_or_the_time_is_up(
    catalog: ModelCatalog, redis_client: redis.Redis
) -> None:
    assert catalog.await_answer("nobody", 0.2) is None
    catalog.answer("t", {"ok": False, "error": "bad"}, 60)
    assert catalog.await_answer("t", 5) == {"ok": False, "error": "bad"}
    assert keys(redis_client) == set()  # the answer is taken, its list gone
