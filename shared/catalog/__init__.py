"""The model catalog: every model's metadata in Redis, uploaded models' files beside it."""
