"""The site lease a write is made under, checked locally before every write: no database round trip.

When several gridctl instances share sites (gridctl/cluster), each site is owned through a lease row in
PostgreSQL whose expiry the database stamps with its own clock. This process never compares clocks: it
counts the lease from the moment it *sent* the renewal, on its monotonic clock. The database stamped the
expiry after that moment, so no other instance can take the site before `valid_until` here.

A write may start only while enough of the lease is left for the longest write to finish
(`write_budget_s`, which the arbiter also enforces on every write) plus a margin, so the last byte a
write sends leaves before anyone else may command the site. The lease's length must therefore exceed the
renewal period plus the write budget and the margin (checked when the coordinator starts).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

# Two monotonic clocks tick at the same rate to within parts per million, and a busy event loop may
# run a timer late: this much of every lease is never used.
MARGIN_S = 0.5


@dataclass
class SiteLease:
    site_id: str
    epoch: int
    lease_s: float
    write_budget_s: float
    # The monotonic instant until which no other instance can hold the site.
    valid_until: float = 0.0
    # Why this instance no longer holds the site (None while it does).
    ended: str | None = None
    margin_s: float = MARGIN_S
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)

    def renewed(self, sent_at: float) -> None:
        """The database renewed the lease with a statement sent at `sent_at` (this clock)."""
        self.valid_until = max(self.valid_until, sent_at + self.lease_s)

    @property
    def stop_at(self) -> float:
        """The last instant a write may start."""
        return self.valid_until - self.write_budget_s - self.margin_s

    def remaining_s(self) -> float:
        return self.stop_at - self.clock()

    def refusal(self) -> str | None:
        """Why a write must not start now, or None when it may."""
        if self.ended is not None:
            return f"the site lease (epoch {self.epoch}) is no longer held: {self.ended}"
        late = -self.remaining_s()
        if late >= 0:
            return (f"the site lease (epoch {self.epoch}) was not renewed in time (write window closed "
                    f"{late:.1f} s ago)")
        return None
