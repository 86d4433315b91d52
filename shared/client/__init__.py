"""The HTTP client of the API and the `lstmgen` command; for people and scripts, not services."""

from shared.client.http import (
    ApiError,
    CharProbability,
    Client,
    Event,
    FieldError,
    Job,
    JobPage,
    ModelInfo,
    Progress,
    StreamBroken,
    parse_sse,
)

__all__ = [
    "ApiError",
    "CharProbability",
    "Client",
    "Event",
    "FieldError",
    "Job",
    "JobPage",
    "ModelInfo",
    "Progress",
    "StreamBroken",
    "parse_sse",
]
