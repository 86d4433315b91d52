"""The Python client of the lstmgen HTTP API, and the `lstmgen` command line.

Used by people and scripts; no service process imports it.
"""

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
