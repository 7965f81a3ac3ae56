"""Which sites an instance should claim or hand over: a fair share, computed alike by every instance from
the same rows of the database, so the instances agree without talking to each other.

With n sites served by k live instances, every instance's share is n // k, and the n % k instances that
hold the most (ties: the smaller instance id) may hold one more. An instance below its share claims free
sites (expired or released leases) of those it was given; one above hands over its excess, but only sites
that an instance below its share could take. Nobody takes a site from a live owner: a joining instance
gets its share as the others hand theirs over, one lease at a time.

Among free sites an instance prefers those ranking highest for it by rendezvous hashing (and hands over
those ranking lowest), so instances racing for free sites mostly want different ones.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field

from gridctl.cluster.store import ClusterState


@dataclass(frozen=True)
class Moves:
    claim: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)


def rank(site_id: str, instance_id: str) -> int:
    return zlib.crc32(f"{site_id}\0{instance_id}".encode())


def shares(state: ClusterState) -> dict[str, int]:
    """Each live instance's fair number of sites."""
    live = state.instances
    if not live:
        return {}
    served = sorted(set().union(*(i.sites for i in live.values())))
    held = {i: sum(1 for s in served if _held_by(state, s) == i) for i in live}
    base, extra = divmod(len(served), len(live))
    ranked = sorted(live, key=lambda i: (-held[i], i))
    return {i: base + (1 if n < extra else 0) for n, i in enumerate(ranked)}


def fair_share(me: str, state: ClusterState) -> Moves:
    if me not in state.instances:
        return Moves()
    quota = shares(state)
    given = state.instances[me].sites
    mine = sorted((s for s in given if _held_by(state, s) == me), key=lambda s: -rank(s, me))
    if len(mine) > quota[me]:
        excess = len(mine) - quota[me]
        held = {i: sum(1 for s in state.leases if _held_by(state, s) == i) for i in state.instances}
        takers = [i for i in state.instances if i != me and held[i] < quota[i]]
        release = [s for s in reversed(mine) if any(s in state.instances[t].sites for t in takers)]
        return Moves(release=release[:excess])
    free = sorted((s for s in given if _held_by(state, s) is None), key=lambda s: -rank(s, me))
    return Moves(claim=free[: max(quota[me] - len(mine), 0)])


def _held_by(state: ClusterState, site_id: str) -> str | None:
    """The live owner of a site (None: free to claim)."""
    lease = state.leases.get(site_id)
    if lease is None or not lease.live or lease.owner not in state.instances:
        return None
    return lease.owner
