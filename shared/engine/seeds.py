"""Random seeds of jobs: their range, drawing one, checking one (no compiled code needed)."""

from __future__ import annotations

import secrets

MAX_RANDOM_SEED = 2**64 - 1
# Seeds we draw ourselves stay below 2**53 so JSON clients (JavaScript numbers) keep them exact.
DERIVED_SEED_LIMIT = 2**53


def derive_random_seed() -> int:
    """Draw a fresh random seed (reported back so a run can be repeated)."""
    return secrets.randbelow(DERIVED_SEED_LIMIT)


def check_random_seed(random_seed: int) -> int:
    """Return the seed if it fits in 64 unsigned bits, else raise ValueError."""
    if isinstance(random_seed, bool) or not 0 <= random_seed <= MAX_RANDOM_SEED:
        raise ValueError(f"random seed must be an integer in [0, 2**64), got {random_seed!r}")
    return int(random_seed)
