"""Benchmarks that print figures: the engine, batching, the service end to end, load."""
