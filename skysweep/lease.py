"""One driver per sweep: a lease in the sweep's prefix that keeps two controllers off it.

The lease is a numbered series of objects, ``<sweep>/lease/<generation>.json``; the highest
generation is the current one. Taking the lease is an exclusive create of the next
generation (``If-None-Match: *`` on S3, a hard link on ``file://``), so of two machines that
race for it exactly one wins. The holder renews its own generation while it runs; anyone
may take over by creating the next generation once the current one has expired or been
released. A holder that finds a newer generation than its own has lost the lease and stops.

Expiry compares wall clocks of different machines: the time to live is long against usual
clock skew, and renewal comes long before it runs out.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import time
from dataclasses import asdict, dataclass

from skysweep.errors import UsageError
from skysweep.process import running
from skysweep.store import Store, join

TTL_SECONDS = 60.0
RENEW_EVERY = 15.0


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    since: str
    token: str
    expires_at: float
    released: bool = False

    def describe(self) -> str:
        return f"pid {self.pid} on host {self.host}, since {self.since}"


class LeaseHeldError(UsageError):
    """Another controller drives the sweep."""

    def __init__(self, sweep_url: str, holder: Holder) -> None:
        self.holder = holder
        super().__init__(
            f"sweep {sweep_url.rsplit('/', 1)[-1]} is already being driven by {holder.describe()}",
            hint=f"follow it instead: skysweep wait {sweep_url}; or stop that process and "
            f"try again (its lease runs out in {max(0, int(holder.expires_at - time.time()))} s "
            "unless it renews it)",
        )


def _folder(sweep_id: str) -> str:
    return join(sweep_id, "lease")


def _key(sweep_id: str, generation: int) -> str:
    return join(_folder(sweep_id), f"{generation:08d}.json")


def _generations(store: Store, sweep_id: str) -> list[int]:
    found = []
    for info in store.list(_folder(sweep_id)):
        name = info.key.rsplit("/", 1)[-1].removesuffix(".json")
        if name.isdigit():
            found.append(int(name))
    return sorted(found)


def current(store: Store, sweep_id: str) -> Holder | None:
    """Who holds the sweep's lease now, if anyone (an expired or released lease is no one)."""
    generations = _generations(store, sweep_id)
    if not generations:
        return None
    holder = _read(store, sweep_id, generations[-1])
    return holder if holder is not None and _live(holder) else None


def _live(holder: Holder) -> bool:
    """Whether the holder still drives the sweep: not released, not expired, and, when it is
    a process of this machine, still running (a killed controller need not be waited out)."""
    if holder.released or holder.expires_at < time.time():
        return False
    return holder.host != socket.gethostname() or running(holder.pid)


def _read(store: Store, sweep_id: str, generation: int) -> Holder | None:
    data = store.get(_key(sweep_id, generation))
    if data is None:
        return None
    try:
        return Holder(**json.loads(data))
    except (ValueError, TypeError):
        return None  # unreadable: treat as expired, the next generation replaces it


@dataclass
class Lease:
    store: Store
    sweep_id: str
    generation: int
    holder: Holder
    last_renewed: float = 0.0
    ttl: float = TTL_SECONDS
    released: bool = False

    @classmethod
    def acquire(cls, store: Store, sweep_id: str, *, ttl: float = TTL_SECONDS) -> Lease:
        """Take the lease, or raise :class:`LeaseHeldError` naming who holds it."""
        for _ in range(5):
            generations = _generations(store, sweep_id)
            top = generations[-1] if generations else 0
            if top:
                existing = _read(store, sweep_id, top)
                if existing is not None and _live(existing):
                    raise LeaseHeldError(f"{store.url}/{sweep_id}", existing)
            holder = _me(ttl)
            if store.put_if_absent(_key(sweep_id, top + 1), _encode(holder)):
                if top > 1:  # keep the one before for the record, drop older ones
                    store.delete(_key(sweep_id, top - 1))
                return cls(store, sweep_id, top + 1, holder, time.monotonic(), ttl)
        raise LeaseHeldError(f"{store.url}/{sweep_id}", _read(store, sweep_id, top + 1) or holder)

    def renew(self, *, force: bool = False) -> bool:
        """Extend the lease when due; False when it was lost to another controller."""
        if self.released:
            return False
        # Due by the monotonic clock, or by the wall clock the lease is judged by (a
        # suspended machine's monotonic clock may have stood still).
        due = (
            force
            or time.monotonic() - self.last_renewed >= min(RENEW_EVERY, self.ttl / 4)
            or time.time() >= self.holder.expires_at - self.ttl * 0.75
        )
        if not due:
            return True
        if _generations(self.store, self.sweep_id)[-1:] != [self.generation]:
            return False
        latest = _read(self.store, self.sweep_id, self.generation)
        if latest is None or latest.token != self.holder.token:
            return False
        self.holder = Holder(
            self.holder.host,
            self.holder.pid,
            self.holder.since,
            self.holder.token,
            time.time() + self.ttl,
        )
        self.store.put(_key(self.sweep_id, self.generation), _encode(self.holder))
        self.last_renewed = time.monotonic()
        return True

    def hand_over(self, pid: int) -> bool:
        """Give the lease to another process of this machine (a detached controller)."""
        self.holder = Holder(
            self.holder.host, pid, self.holder.since, self.holder.token, self.holder.expires_at
        )
        return self.renew(force=True)

    def release(self) -> None:
        if self.released:
            return
        self.released = True
        if _generations(self.store, self.sweep_id)[-1:] != [self.generation]:
            return
        released = Holder(**{**asdict(self.holder), "released": True})
        self.store.put(_key(self.sweep_id, self.generation), _encode(released))

    @classmethod
    def resume(cls, store: Store, sweep_id: str, generation: int, token: str) -> Lease:
        """Take up a lease handed over by another process (see :meth:`hand_over`)."""
        holder = _read(store, sweep_id, generation)
        if holder is None or holder.token != token:
            raise LeaseHeldError(f"{store.url}/{sweep_id}", holder or _me(0))
        lease = cls(store, sweep_id, generation, holder)
        if not lease.hand_over(os.getpid()):
            raise LeaseHeldError(f"{store.url}/{sweep_id}", current(store, sweep_id) or holder)
        return lease


def _me(ttl: float) -> Holder:
    return Holder(
        host=socket.gethostname(),
        pid=os.getpid(),
        since=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        token=secrets.token_hex(8),
        expires_at=time.time() + ttl,
    )


def _encode(holder: Holder) -> bytes:
    return json.dumps(asdict(holder)).encode()
