"""Training jobs: records of their own kind in Redis, with the job statuses and TTLs."""
