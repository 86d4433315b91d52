"""Sentinel URLs as kombu spells them, and the settings that need them."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from shared.redis_connection import SentinelAddress, is_sentinel, parse_sentinel_url
from shared.settings import Settings


def test_parses_every_sentinel_with_the_primarys_db_and_password() -> None:
    url = "sentinel://:s3cr%40t@10.0.0.1:26380;sentinel://10.0.0.2;sentinel://h3:26379/2"
    assert is_sentinel(url)
    assert parse_sentinel_url(url) == SentinelAddress(
        (("10.0.0.1", 26380), ("10.0.0.2", 26379), ("h3", 26379)), db=2, password="s3cr@t"
    )


@pytest.mark.parametrize(
    ("url", "fault"),
    [
        ("sentinel://h1:26379;redis://h2:6379", "not a sentinel://host:port"),
        ("sentinel://h1:port", "port that is not a number"),
        ("sentinel://h1:26379/zero", "database that is not a number"),
        ("sentinel://", "not a sentinel://host:port"),
    ],
)
def test_bad_urls_name_the_entry(url: str, fault: str) -> None:
    with pytest.raises(ValueError, match=fault):
        parse_sentinel_url(url)


def test_plain_urls_are_not_sentinels() -> None:
    assert not is_sentinel("redis://127.0.0.1:6379/0")
    assert not is_sentinel("rediss://host:6380/1")


def test_settings_need_the_master_name_with_sentinels() -> None:
    url = "sentinel://h1:26379;sentinel://h2:26379"
    with pytest.raises(ValidationError, match="LSTMGEN_REDIS_SENTINEL_MASTER"):
        Settings(redis_url=url, redis_sentinel_master="")
    assert (
        Settings(redis_url=url, redis_sentinel_master="lstmgen").redis_sentinel_master == "lstmgen"
    )
    with pytest.raises(ValidationError, match="port that is not a number"):
        Settings(redis_url="sentinel://h1:x", redis_sentinel_master="lstmgen")
