"""Budgets of one sample's work, so no input can hang a run or exhaust memory.

- :class:`Limits`: the per-sample time budget, how many (image, class) rows share one
  forward/backward pass, and the most classes one image may carry. None of them changes
  a result (chunking is exact), so they are not part of the method's recorded config and
  a resumed run may use other limits.
- :class:`Deadline`: a sample's budget, checked *cooperatively* between stages (and between
  GrabCut iterations). Python cannot stop a thread, so nothing is killed mid-stage; a
  stage that overruns fails its sample with :class:`SampleTimeoutError` at the next check.
- :func:`call_bounded`: runs C code that may never return (``cv2.grabCut`` on degenerate
  colour models) in a daemon thread while the caller waits in short, interruptible waits.
  Ctrl-C and the deadline therefore act at once even while the C call is stuck; the
  abandoned thread is told to stop after its current step and, being a daemon, never
  keeps the process alive.
- :func:`thread_map`: a thread pool whose caller waits in short slices too, and whose
  workers' :func:`call_bounded` calls give up as soon as the caller stops waiting (Ctrl-C,
  an error). ``with ThreadPoolExecutor`` would instead wait on exit for a worker stuck in
  C code, and the interpreter joins pool threads at exit: Ctrl-C was lost (issue 25).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TypeVar

from ewc_fo.runtime.errors import ConfigError, SampleTimeoutError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: default per-sample budget: generous (a normal sample takes seconds), it only ends hangs
DEFAULT_SAMPLE_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Limits:
    """Resource bounds of a run (see the module docstring for why they are not config).

    ``sample_timeout_s``: seconds one sample may take (its share of the batch's explain
    pass included); None = no limit. ``class_chunk``: (image, class) rows per
    forward/backward pass: memory of the explain stage grows with it, not with the
    number of classes. ``max_classes``: a sample with more labels fails with a clear error
    (maps and masks of every class are kept until the sample is written).
    """

    sample_timeout_s: float | None = DEFAULT_SAMPLE_TIMEOUT_S
    class_chunk: int = 4
    max_classes: int = 64

    def __post_init__(self) -> None:
        if self.sample_timeout_s is not None and not self.sample_timeout_s > 0:
            raise ConfigError(f"sample_timeout_s must be > 0 (or None), got {self.sample_timeout_s}")
        if int(self.class_chunk) < 1 or int(self.max_classes) < 1:
            raise ConfigError("class_chunk and max_classes must be >= 1")


class Deadline:
    """A point in time after which :meth:`check` raises :class:`SampleTimeoutError`.

    ``Deadline(None)`` never expires. :meth:`cancel` expires it at once (any thread).
    """

    def __init__(self, seconds: float | None, what: str = "sample"):
        self.seconds = seconds
        self.what = what
        self.end = None if seconds is None else time.monotonic() + float(seconds)
        self._cancelled = threading.Event()

    def remaining(self) -> float:
        if self._cancelled.is_set():
            return 0.0
        return float("inf") if self.end is None else self.end - time.monotonic()

    def expired(self) -> bool:
        return self.remaining() <= 0

    def cancel(self) -> None:
        self._cancelled.set()

    def check(self, stage: str) -> None:
        """Raise :class:`SampleTimeoutError` naming ``stage`` if the budget is spent."""
        if self.expired():
            raise SampleTimeoutError(
                f"{self.what} exceeded its time budget of {self.seconds:g} s during {stage} "
                "(raise it with --sample-timeout)"
            )


class Abandoned(BaseException):
    """Raised in a :func:`thread_map` worker whose caller has already given up (never seen
    by the caller, which raises its own exception). A BaseException so no per-sample
    ``except Exception`` records it as a sample's failure."""


_worker = threading.local()


def call_bounded(fn: Callable[[threading.Event], T], deadline: Deadline | None, stage: str,
                 poll_s: float = 0.05) -> T:
    """Run ``fn(stop)`` in a daemon thread and return its result (or raise its exception).

    The caller waits in ``poll_s`` slices, so KeyboardInterrupt (main thread) and the
    deadline take effect within ``poll_s`` even if ``fn`` is stuck in C code. On either,
    ``stop`` is set (``fn`` should check it between steps) and the thread is abandoned.
    Called in a :func:`thread_map` worker, it also gives up (:class:`Abandoned`) once that
    map's caller has stopped waiting.
    """
    cancelled = getattr(_worker, "cancelled", None)
    stop = threading.Event()
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn(stop)
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    th = threading.Thread(target=target, name=f"ewc-{stage}", daemon=True)
    th.start()
    try:
        while th.is_alive():
            th.join(poll_s)
            if deadline is not None and th.is_alive() and deadline.expired():
                log.warning("%s: abandoning a %s call still running past the deadline", deadline.what, stage)
                deadline.check(stage)
            if cancelled is not None and th.is_alive() and cancelled.is_set():
                raise Abandoned(f"{stage}: the caller stopped waiting")
    finally:
        stop.set()  # normal return: no-op; interrupt/timeout: the thread stops at its next step
    if "error" in box:
        raise box["error"]
    return box["value"]


def thread_map(fn: Callable[..., T], items: Iterable, workers: int, name: str = "ewc",
               poll_s: float = 0.05) -> list[T]:
    """``[fn(x) for x in items]`` on up to ``workers`` threads, results in order.

    An item's exception is raised as soon as it happens (the first in item order of those
    failed by then), without waiting for slower items. If the wait
    ends early (Ctrl-C in the caller, an item's error), queued items are cancelled and
    running ones stop at their next :func:`call_bounded` poll, so no pool thread outlives
    the call for long and the interpreter's exit is not held up by a stuck C call.
    """
    items = list(items)
    n = min(len(items), int(workers))
    if n <= 1:
        return [fn(x) for x in items]
    cancelled = threading.Event()

    def run(x):
        _worker.cancelled = cancelled
        try:
            return fn(x)
        finally:
            _worker.cancelled = None

    pool = ThreadPoolExecutor(n, thread_name_prefix=name)
    try:
        futures = [pool.submit(run, x) for x in items]
        pending = set(futures)
        while pending:  # short slices: a signal is handled within poll_s whichever thread got it
            _, pending = wait(pending, timeout=poll_s, return_when=FIRST_EXCEPTION)
            failed = [f for f in futures if f.done() and f.exception() is not None]
            if failed:  # the first in item order of those that failed; the rest are given up
                raise failed[0].exception()
        return [f.result() for f in futures]
    except BaseException:
        cancelled.set()
        raise
    finally:
        cancelled.set()  # no-op after success (every item is done)
        pool.shutdown(wait=True, cancel_futures=True)  # running items stop within poll_s
