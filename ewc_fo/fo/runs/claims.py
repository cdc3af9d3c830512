"""Leases in the FiftyOne database: one run per prefix, one schema change at a time.

FiftyOne keeps a dataset's field list, runs, saved views and mask targets in one document
and rewrites a whole list when one entry changes (voxel51/fiftyone#3185), so two processes
declaring fields at once silently drop each other's declarations. And two runs with the
same prefix would both do all the work. Both are prevented with leases kept in a small
collection of the same database every process already shares:

- :func:`claim_prefix` gives a run exclusive use of its prefix on a dataset;
- :func:`schema_lock` serializes changes to the dataset document across processes and
  reloads the dataset inside the lock, so each change starts from the latest schema.

A lease is one document ``{_id, owner, holder, expires}``; taking it is one atomic
``find_one_and_update`` (an update pipeline) that changes the owner only when the lease
is free, expired or already ours, and returns who holds it afterwards. Expiry times come from
the database server's clock (``$$NOW``), so hosts with skewed clocks agree. A killed
holder stops renewing and its lease is taken over once it expires, or at once by a process
on the same machine that sees the holder's pid is gone.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime

import fiftyone as fo
import pymongo
from pymongo.errors import ConnectionFailure, DuplicateKeyError

from ewc_fo.runtime.errors import ClaimLostError, RunInProgressError, SchemaBusyError

log = logging.getLogger(__name__)

COLLECTION = "ewc_fo_claims"
SCHEMA = "__schema__"
#: how long a schema change waits for another holder of the lock before giving up
SCHEMA_WAIT_S = 300.0
_POLL_S = 0.1
_index_ready = False


def _collection():
    global _index_ready
    from fiftyone.core.odm import get_db_conn

    coll = get_db_conn()[COLLECTION]
    if not _index_ready:
        # garbage-collects leases whose holder vanished long ago (expiry itself is checked
        # on every acquire; MongoDB's TTL monitor only runs once a minute)
        coll.create_index("expires", expireAfterSeconds=24 * 3600)
        _index_ready = True
    return coll


def _dataset_key(dataset: fo.Dataset) -> str:
    return str(dataset._doc.id)


def _holder() -> str:
    return f"{socket.gethostname()} pid {os.getpid()}"


def _machine() -> str:
    """Who can check our pid: same host name, same kernel boot, same pid namespace."""
    parts = [socket.gethostname()]
    for path in ("/proc/sys/kernel/random/boot_id",):
        try:
            with open(path) as f:
                parts.append(f.read().strip())
        except OSError:
            parts.append("?")
    try:
        parts.append(os.readlink("/proc/self/ns/pid"))
    except OSError:
        parts.append("?")
    return "|".join(parts)


def _dead_here(doc: dict) -> bool:
    """True if the lease's holder ran on this machine and its process is gone."""
    if doc.get("machine") != _machine() or not isinstance(doc.get("pid"), int):
        return False
    if doc["pid"] == os.getpid():
        return False
    try:
        os.kill(doc["pid"], 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


class Lease:
    """One expiring lease: acquire, renew, release; optionally renewed by a thread."""

    def __init__(self, key: str, *, ttl_s: float, what: str):
        if ttl_s <= 0:
            raise ValueError("ttl_s must be > 0")
        self.key = key
        self.ttl_s = float(ttl_s)
        self.what = what
        self.owner = f"{_holder()} {uuid.uuid4().hex}"
        self.expires: datetime | None = None
        self.held = False
        self._lost: Exception | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- taking it
    def try_acquire(self) -> dict | None:
        """Take the lease if free, expired or ours; otherwise return the holder's lease."""
        coll = _collection()
        take = {"$or": [{"$eq": [{"$type": "$owner"}, "missing"]}, {"$eq": ["$owner", self.owner]},
                        {"$lt": ["$expires", "$$NOW"]}]}
        keep = lambda f, new: {"$cond": ["$_take", new, f"${f}"]}  # noqa: E731
        pipeline = [
            {"$set": {"_take": take}},
            {"$set": {"owner": keep("owner", self.owner), "holder": keep("holder", _holder()),
                      "machine": keep("machine", _machine()), "pid": keep("pid", os.getpid()),
                      "expires": keep("expires", {"$add": ["$$NOW", int(self.ttl_s * 1000)]})}},
            {"$unset": "_take"},
        ]
        for _ in range(5):
            try:
                doc = coll.find_one_and_update({"_id": self.key}, pipeline, upsert=True,
                                               return_document=pymongo.ReturnDocument.AFTER)
                break
            except DuplicateKeyError:  # two first-time upserts raced: the loser reads the winner's
                continue
        else:
            doc = coll.find_one({"_id": self.key})
        if doc is not None and doc.get("owner") != self.owner and _dead_here(doc):
            # its holder was killed on this very machine: no need to wait for the expiry
            log.warning("taking over %s from %s, which is no longer running", self.what, doc.get("holder"))
            coll.update_one({"_id": self.key, "owner": doc["owner"]},
                            {"$set": {"expires": datetime(1970, 1, 1)}})
            return self.try_acquire()
        if doc is None or doc.get("owner") != self.owner:
            return doc or {}
        self.expires = doc["expires"]
        self.held = True
        return None

    def acquire(self, wait_s: float = 0.0) -> Lease:
        deadline = time.monotonic() + max(0.0, wait_s)
        self.waited = False  # whether another holder had it first (label: --wait outlasting a run)
        while True:
            other = self.try_acquire()
            if other is None:
                return self
            if time.monotonic() >= deadline:
                raise self._busy(other)
            self.waited = True
            time.sleep(_POLL_S)

    def _busy(self, other: dict) -> Exception:
        until = other.get("expires")
        until_s = until.strftime("%Y-%m-%d %H:%M:%S UTC") if until else "unknown"
        return RunInProgressError(
            f"{self.what} is in use by {other.get('holder', '?')} (lease until {until_s}, renewed "
            "while that process lives); wait for it to finish, or, if that process is gone, run "
            "again after that time"
        )

    # --- keeping it
    def renew(self) -> None:
        """Push the expiry ``ttl_s`` past now; raise :class:`ClaimLostError` if it was taken."""
        if self._lost is not None:
            raise self._lost
        res = _collection().find_one_and_update(
            {"_id": self.key, "owner": self.owner},
            [{"$set": {"expires": {"$add": ["$$NOW", int(self.ttl_s * 1000)]}}}],
            return_document=pymongo.ReturnDocument.AFTER,
        )
        if res is None:
            self.held = False
            self._lost = ClaimLostError(
                f"{self.what}: the lease expired and was taken by another process; "
                "this run stopped writing (run the same command again to resume)"
            )
            raise self._lost
        self.expires = res["expires"]

    def check(self) -> None:
        """Raise if the background renewal found the lease lost (cheap: no database call)."""
        if self._lost is not None:
            raise self._lost

    def start_renewing(self) -> None:
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name=f"ewc-fo lease {self.key}", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl_s / 3):
            try:
                self.renew()
            except ClaimLostError:
                log.error("%s", self._lost)
                return
            except Exception as e:  # database briefly away: try again next tick
                log.warning("could not renew the lease on %s: %s", self.what, str(e).splitlines()[0][:200])

    def stop_renewing(self) -> None:
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
        self._thread = None

    # --- giving it back
    def release(self) -> None:
        """Give the lease back (only if still ours). Best effort: an unreachable database
        just lets it expire."""
        self.stop_renewing()
        if not self.held:
            return
        self.held = False
        try:
            _collection().delete_one({"_id": self.key, "owner": self.owner})
        except ConnectionFailure as e:
            log.warning("could not release %s (it expires by itself): %s", self.what, str(e).splitlines()[0][:200])

    def __enter__(self) -> Lease:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is not None and _is_db_failure(exc):
            self.stop_renewing()  # the database is gone: the lease will expire on its own
            self.held = False
            return
        self.release()


class PrefixClaim(Lease):
    """Exclusive use of a run prefix on a dataset (see :func:`claim_prefix`)."""

    def __init__(self, dataset: fo.Dataset, prefix: str, *, ttl_s: float):
        super().__init__(f"{_dataset_key(dataset)}:prefix:{prefix}", ttl_s=ttl_s,
                         what=f"run {prefix!r} on dataset {dataset.name!r}")
        self.dataset_name = dataset.name
        self.prefix = prefix


def claim_prefix(dataset: fo.Dataset, prefix: str, *, ttl_s: float = 120.0, wait_s: float = 0.0,
                 auto_renew: bool = False) -> PrefixClaim:
    """Take the exclusive lease on ``prefix`` for ``dataset``; usable as a context manager.

    Waits up to ``wait_s`` seconds for another holder to release it, then raises
    :class:`RunInProgressError` naming the holder and its expiry. A lease not renewed
    within ``ttl_s`` (its holder was killed) is taken over. With ``auto_renew`` a
    daemon thread renews it every ``ttl_s / 3`` until :meth:`PrefixClaim.release`.
    """
    claim = PrefixClaim(dataset, prefix, ttl_s=ttl_s)
    claim.acquire(wait_s)
    if auto_renew:
        claim.start_renewing()
    return claim


_local = threading.local()


@contextmanager
def schema_lock(dataset: fo.Dataset, *, ttl_s: float = 60.0, wait_s: float | None = None) -> Iterator[fo.Dataset]:
    """Serialize changes to ``dataset``'s document (fields, runs, saved views, mask
    targets) across processes; the dataset is reloaded on entry so changes start from
    the latest schema. Re-entrant within a thread. Renewed while held, so a slow change
    (deleting a field of a large dataset) keeps it; a killed holder's lock expires.
    Waits ``wait_s`` (default :data:`SCHEMA_WAIT_S`) for another holder."""
    key = f"{_dataset_key(dataset)}:{SCHEMA}"
    held = getattr(_local, "held", None)
    if held is None:
        held = _local.held = {}
    if key in held:
        held[key] += 1
        try:
            yield dataset
        finally:
            held[key] -= 1
        return
    lease = Lease(key, ttl_s=ttl_s, what=f"the field schema of dataset {dataset.name!r}")
    try:
        lease.acquire(SCHEMA_WAIT_S if wait_s is None else wait_s)
    except RunInProgressError as e:
        raise SchemaBusyError(str(e)) from None
    lease.start_renewing()
    held[key] = 1
    try:
        dataset.reload()
        yield dataset
    except BaseException as e:
        held.pop(key, None)
        lease.__exit__(type(e), e, None)
        raise
    else:
        held.pop(key, None)
        lease.release()


def _is_db_failure(exc: BaseException) -> bool:
    from ewc_fo.runtime.errors import DatabaseUnavailableError

    return isinstance(exc, (ConnectionFailure, DatabaseUnavailableError))
