"""A training sent as `multipart/form-data`: the corpus as the file part `file`, the other
fields as form fields, read into the body the JSON route takes (so one request model checks
both)."""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Request
from werkzeug.datastructures import FileStorage
from werkzeug.exceptions import RequestEntityTooLarge

from api.problems import FieldError, Problem, invalid

BYTES_PER_CHAR = 4  # the most UTF-8 spends on one character
FORM_OVERHEAD_BYTES = 2**20  # room for the other form fields and the multipart framing
INT_FIELDS = ("epochs", "seq_len", "batch_size")
FLOAT_FIELDS = ("learning_rate", "validation_split")
_INT = re.compile(r"^\s*[+-]?\d{1,18}\s*$")


def form_limit(max_chars: int) -> int:
    """Return the largest form a corpus of `max_chars` characters may arrive in, in bytes."""
    return BYTES_PER_CHAR * max_chars + FORM_OVERHEAD_BYTES


def read_training_form(request: Request, max_chars: int) -> dict[str, Any]:
    """Return a training form as the JSON body it stands for, the file's text as `text`."""
    request.max_content_length = form_limit(max_chars)
    try:
        form, files = request.form, request.files
    except RequestEntityTooLarge:
        raise too_large(f"the request is larger than {form_limit(max_chars)} bytes") from None
    if "text" in form:
        raise invalid([FieldError("text", "send the corpus as the file part `file`")])
    file = files.get("file")
    if file is None:
        raise invalid([FieldError("file", "send the corpus as a file part named `file`")])
    payload = {key: form_value(key, value) for key, value in form.items()}
    payload["text"] = read_corpus(file, max_chars)
    return payload


def form_value(key: str, value: str) -> Any:
    """Return a form field as its JSON value; one that does not parse is left a string, for
    the request model to refuse naming the field."""
    if key == "layers":
        return parse_layers(value)
    if key in INT_FIELDS and _INT.match(value):
        return int(value)
    if key in FLOAT_FIELDS:
        try:
            return float(value)
        except ValueError:
            return value
    return value


def parse_layers(value: str) -> Any:
    """Return `128,128` or `[128, 128]` as a list of ints, else the string itself."""
    try:
        parsed = json.loads(value) if value.lstrip().startswith("[") else None
    except ValueError:
        return value
    if parsed is not None:
        return parsed
    parts = value.split(",")
    return [int(part) for part in parts] if all(_INT.match(p) for p in parts) else value


def read_corpus(file: FileStorage, max_chars: int) -> str:
    """Return the file's text, refusing one that is not UTF-8, empty, or too long."""
    raw = file.stream.read(BYTES_PER_CHAR * max_chars + 1)
    if len(raw) > BYTES_PER_CHAR * max_chars:  # more bytes than the characters could take
        raise too_large(f"must be at most {max_chars} characters")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise invalid([FieldError("file", f"is not valid UTF-8 (byte {error.start})")]) from None
    if not text:
        raise invalid([FieldError("file", "is empty")])
    if len(text) > max_chars:
        raise too_large(f"must be at most {max_chars} characters")
    return text


def too_large(message: str) -> Problem:
    """Return the 413 of a corpus file over the limit."""
    errors = [FieldError("file", message)]
    return Problem(413, "Corpus too large", f"file: {message}", "corpus-too-large", errors)
