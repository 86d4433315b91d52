"""The job store: records, enums, keys, Lua scripts, the lifecycle; for the API and the workers."""
