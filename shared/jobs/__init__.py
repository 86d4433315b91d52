"""The job store: job records and their enums, Redis keys, serialisation and Lua scripts.

Used by the API (create, read, cancel) and the workers (claim, flush, finish).
"""
