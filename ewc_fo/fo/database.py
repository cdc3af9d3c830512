"""The FiftyOne database connection, as ewc-fo's commands want it: fail fast, say so in a line.

pymongo waits 30 s for a server before giving up on every operation, and then prints a
long traceback; a command line tool should notice a stopped database within seconds and
say what happened and how to go on (docs/concurrency.md).
"""

from __future__ import annotations

#: how long a command waits for an unreachable database before giving up
SERVER_TIMEOUT_S = 10.0


def fail_fast(seconds: float = SERVER_TIMEOUT_S) -> None:
    """Make the connection FiftyOne is about to open give up after ``seconds`` without a
    server (pymongo's ``serverSelectionTimeoutMS``). Does nothing once connected, or when
    the user's ``database_uri`` already sets that option."""
    import fiftyone as fo
    import fiftyone.core.odm.database as fodb

    if getattr(fodb, "_client", None) is not None:
        return
    if "serverselectiontimeoutms" in (fo.config.database_uri or "").lower():
        return
    kwargs = getattr(fodb, "_connection_kwargs", None)
    if isinstance(kwargs, dict):  # FiftyOne passes these to pymongo and mongoengine
        kwargs.setdefault("serverSelectionTimeoutMS", int(seconds * 1000))


def connection_error(e: BaseException | None) -> BaseException | None:
    """The pymongo "no database there" error (refused, timed out, reset) behind ``e``, if
    any: FiftyOne wraps a failed first connection in a plain ``ConnectionError``."""
    seen = 0
    while e is not None and seen < 5:
        if type(e).__module__.startswith("pymongo"):
            from pymongo.errors import ConnectionFailure

            if isinstance(e, ConnectionFailure):
                return e
        e, seen = e.__cause__ or e.__context__, seen + 1
    return None


def down_message(e: BaseException) -> str:
    """One line: the database went away, nothing finished is lost, how to go on."""
    e = connection_error(e) or e
    first = (str(e).splitlines() or [""])[0]
    for tail in (", Timeout:", " (configured timeouts"):
        first = first.split(tail)[0]
    first = first.strip()[:160]
    return (f"lost the connection to the FiftyOne database ({type(e).__name__}: {first}); what "
            "finished is saved: once the database is back, run the same command again (a label "
            "run resumes where it stopped)")
