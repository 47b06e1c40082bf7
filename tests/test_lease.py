"""The sweep's lease, one suite run over every store (as Optuna runs its storage tests over
every storage): a folder on disk and a real S3 endpoint (moto's server on loopback)."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from skysweep.lease import Lease, LeaseHeldError, current
from skysweep.store import FileStore, S3Store, Store

SWEEP = "sweep-1"
MakeStore = Callable[[], Store]


@pytest.fixture(params=["file", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> MakeStore:
    """Makes a new store object on one location each call: two of them are two machines."""
    if request.param == "file":
        root = tmp_path / "store"
        root.mkdir()
        return lambda: FileStore(root)
    bucket: str = request.getfixturevalue("bucket")
    endpoint: str = request.getfixturevalue("moto_endpoint")
    return lambda: S3Store(f"s3://{bucket}/p", endpoint_url=endpoint)


@pytest.fixture
def store(make_store: MakeStore) -> Store:
    return make_store()


def lease_files(store: Store) -> list[str]:
    return sorted(info.key.rsplit("/", 1)[-1] for info in store.list(f"{SWEEP}/lease"))


def expire() -> None:
    time.sleep(0.05)


# ---------------------------------------------------------------------------------------


def test_no_holder_on_a_fresh_sweep(store: Store) -> None:
    assert current(store, SWEEP) is None
    assert lease_files(store) == []


def test_acquire_on_a_fresh_sweep(store: Store) -> None:
    lease = Lease.acquire(store, SWEEP)
    assert lease.generation == 1
    assert lease.holder.host == socket.gethostname()
    assert lease.holder.pid == os.getpid()
    assert lease.holder.expires_at > time.time()
    assert lease_files(store) == ["00000001.json"]
    assert lease.renew(force=True) is True


def test_current_reports_the_holder(store: Store) -> None:
    lease = Lease.acquire(store, SWEEP)
    holder = current(store, SWEEP)
    assert holder is not None
    assert holder.token == lease.holder.token
    assert (holder.host, holder.pid) == (socket.gethostname(), os.getpid())
    assert not holder.released


def test_current_is_none_after_release(store: Store) -> None:
    lease = Lease.acquire(store, SWEEP)
    lease.release()
    assert current(store, SWEEP) is None


def test_second_acquire_raises_naming_the_holder(make_store: MakeStore) -> None:
    first = Lease.acquire(make_store(), SWEEP)
    other = make_store()
    with pytest.raises(LeaseHeldError) as info:
        Lease.acquire(other, SWEEP)
    error = info.value
    assert socket.gethostname() in error.message
    assert str(os.getpid()) in error.message
    assert SWEEP in error.message
    assert error.hint is not None
    assert "skysweep wait" in error.hint
    assert error.holder.token == first.holder.token
    # The failed attempt changed nothing.
    assert lease_files(other) == ["00000001.json"]
    holder = current(other, SWEEP)
    assert holder is not None
    assert holder.token == first.holder.token
    assert first.renew(force=True) is True


def test_release_then_acquire(make_store: MakeStore) -> None:
    first = Lease.acquire(make_store(), SWEEP)
    first.release()
    second = Lease.acquire(make_store(), SWEEP)
    assert second.generation == 2
    holder = current(second.store, SWEEP)
    assert holder is not None
    assert holder.token == second.holder.token
    # The released holder cannot come back, and releasing again does not free the new one.
    assert first.renew(force=True) is False
    first.release()
    assert current(second.store, SWEEP) == holder
    assert second.renew(force=True) is True


def test_generations_beyond_the_last_two_are_dropped(store: Store) -> None:
    for _ in range(4):
        Lease.acquire(store, SWEEP).release()
    last = Lease.acquire(store, SWEEP)
    assert last.generation == 5
    assert lease_files(store) == ["00000004.json", "00000005.json"]


def test_an_expired_lease_can_be_taken_over(make_store: MakeStore) -> None:
    old = Lease.acquire(make_store(), SWEEP, ttl=0.01)
    expire()
    assert current(old.store, SWEEP) is None
    new = Lease.acquire(make_store(), SWEEP)
    assert new.generation == old.generation + 1
    assert old.renew(force=True) is False
    holder = current(new.store, SWEEP)
    assert holder is not None
    assert holder.token == new.holder.token
    # The old holder's release leaves the new holder's lease alone.
    old.release()
    assert current(new.store, SWEEP) == holder
    assert new.renew(force=True) is True


def test_renewal_keeps_a_short_lease_alive(store: Store) -> None:
    lease = Lease.acquire(store, SWEEP, ttl=1.0)
    time.sleep(0.6)
    assert lease.renew(force=True) is True
    time.sleep(0.6)  # past the first expiry, within the renewed one
    holder = current(store, SWEEP)
    assert holder is not None
    assert holder.token == lease.holder.token
    with pytest.raises(LeaseHeldError):
        Lease.acquire(store, SWEEP)


def test_renew_reports_a_lease_lost_after_it_expired(make_store: MakeStore) -> None:
    old = Lease.acquire(make_store(), SWEEP, ttl=0.01)
    expire()
    Lease.acquire(make_store(), SWEEP)
    # What Controller.snapshot() calls on every look.
    assert old.renew() is False


def test_resume_of_a_lease_taken_over_raises(make_store: MakeStore) -> None:
    old = Lease.acquire(make_store(), SWEEP, ttl=0.01)
    expire()
    Lease.acquire(make_store(), SWEEP)
    with pytest.raises(LeaseHeldError):
        Lease.resume(make_store(), SWEEP, old.generation, old.holder.token)


def test_resume_takes_up_a_handed_over_lease(make_store: MakeStore) -> None:
    lease = Lease.acquire(make_store(), SWEEP)
    lease.hand_over(os.getppid())  # another live process of this machine
    holder = current(lease.store, SWEEP)
    assert holder is not None
    assert holder.pid == os.getppid()
    resumed = Lease.resume(make_store(), SWEEP, lease.generation, lease.holder.token)
    assert resumed.holder.pid == os.getpid()
    assert resumed.renew(force=True) is True
    with pytest.raises(LeaseHeldError):
        Lease.resume(make_store(), SWEEP, lease.generation, "not-the-token")


ROUNDS = 20


def race_for(sweep: str, stores: list[Store]) -> tuple[list[Lease], list[LeaseHeldError]]:
    """Every store's ``Lease.acquire`` at the same moment, each in a thread of its own."""
    barrier = threading.Barrier(len(stores))
    won: list[Lease] = []
    lost: list[LeaseHeldError] = []
    other: list[BaseException] = []

    def race(each: Store) -> None:
        barrier.wait(timeout=10)
        try:
            won.append(Lease.acquire(each, sweep))
        except LeaseHeldError as exc:
            lost.append(exc)
        except BaseException as exc:
            other.append(exc)

    threads = [threading.Thread(target=race, args=(each,)) for each in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert other == []
    return won, lost


@pytest.mark.parametrize("make_store", ["file"], indirect=True)
def test_two_racing_acquires_have_exactly_one_winner(make_store: MakeStore) -> None:
    """Two machines start a fresh sweep at the same moment, ROUNDS times over.

    Only on the file store: moto checks ``If-None-Match`` and then writes without a lock, so
    under load two racing conditional PUTs can both succeed there (S3 itself guarantees one).
    """
    stores = [make_store(), make_store()]
    for each in stores:  # connect before the race, so both start it at once
        each.list("race")
    for round_ in range(ROUNDS):
        sweep = f"race-{round_}"
        won, lost = race_for(sweep, stores)
        assert (len(won), len(lost)) == (1, 1), f"round {round_}: {won=} {lost=}"
        assert lost[0].holder.token == won[0].holder.token
        assert won[0].generation == 1
        holder = current(stores[0], sweep)
        assert holder is not None
        assert holder.token == won[0].holder.token


@pytest.mark.parametrize("make_store", ["file"], indirect=True)
def test_two_racing_takeovers_of_an_expired_lease_have_exactly_one_winner(
    make_store: MakeStore,
) -> None:
    stores = [make_store(), make_store()]
    for round_ in range(5):
        sweep = f"takeover-{round_}"
        old = Lease.acquire(stores[0], sweep, ttl=0.01)
        expire()
        won, lost = race_for(sweep, stores)
        assert (len(won), len(lost)) == (1, 1), f"round {round_}: {won=} {lost=}"
        assert won[0].generation == 2
        assert lost[0].holder.token == won[0].holder.token
        assert old.renew(force=True) is False


def test_put_if_absent(store: Store) -> None:
    key = f"{SWEEP}/thing.json"
    assert store.put_if_absent(key, b"first") is True
    assert store.put_if_absent(key, b"second") is False
    assert store.get(key) == b"first"
    assert [info.key for info in store.list(SWEEP)] == [key]


def test_put_if_absent_after_delete_creates_again(store: Store) -> None:
    key = f"{SWEEP}/thing.json"
    assert store.put_if_absent(key, b"first") is True
    store.delete(key)
    assert store.put_if_absent(key, b"again") is True
    assert store.get(key) == b"again"
