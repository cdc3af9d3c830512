"""How fast a simple mistake is answered: a mistyped dataset name or label field.

Times ``ewc-fo`` commands in fresh processes (what a user waits for, imports included): a
dataset typo, a label field typo, and for comparison a correct ``summary``, in three setups:

- ``uri``: a private ``mongod`` (as the tests start) named by ``FIFTYONE_DATABASE_URI``;
- ``local, service running``: no URI; FiftyOne's own database service is already up (a
  process holding it open, as an App or notebook would), with its folder in a temp dir;
- ``local, no service``: no URI and nothing running: each command's FiftyOne starts the
  service itself (the early lookup steps aside; the answer comes after FiftyOne loads).

FiftyOne joins any database service of this user already running, whatever its folder: when
one runs (someone's App, notebook or job), nothing is created in it; the ``running`` setup
then times only the two typos, read-only, against it (the label-field typo on its first
dataset), and ``cold`` is skipped.

Prints a Markdown table (median of ``--repeat`` runs). Target from issue 22: under 3 s on an
idle machine.

    python benchmarks/early_answers.py [--repeat 3] [--setups uri,running,cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests._mongod import start_mongod, stop  # noqa: E402

CASES = [
    ("dataset typo", ["label", "bench-photoz", "--label-field", "labels"], 2),
    ("label field typo", ["label", "bench-photos", "--label-field", "label"], 2),
    ("correct summary (loads FiftyOne)", ["summary", "bench-photos"], 0),
]


SETUP = ("import fiftyone as fo\nd = fo.Dataset('bench-photos', persistent=True)\n"
         "d.add_sample_field('labels', fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)\n")
HOLD = ("import sys\nimport fiftyone as fo\nif not fo.dataset_exists('bench-photos'):\n"
        "    exec(" + repr(SETUP) + ")\nprint('ready', flush=True)\nsys.stdin.read()\n")


def _time(setup: str, env: dict, repeat: int, cases=CASES) -> None:
    for name, cmd, want in cases:
        times, rc = [], None
        for _ in range(repeat):
            t0 = time.perf_counter()
            res = subprocess.run([sys.executable, "-m", "ewc_fo.cli", *cmd], env=env, capture_output=True, text=True)
            times.append(time.perf_counter() - t0)
            rc = res.returncode
        flag = "" if rc == want else f" (expected {want}: {res.stderr.strip()[-120:]})"
        print(f"| {setup} | {name} | {rc}{flag} | {statistics.median(times):.2f} | "
              f"{', '.join(f'{t:.2f}' for t in times)} |", flush=True)


def _running_service() -> tuple[str, str | None] | None:
    """(URI, its first dataset's name) of a FiftyOne database service already running, or None."""
    import pymongo

    from ewc_fo.commands._lookup import running_service_uri

    uri = running_service_uri()
    if uri is None:
        return None
    with pymongo.MongoClient(uri, serverSelectionTimeoutMS=5000) as c:
        doc = c.fiftyone.datasets.find_one({}, {"name": 1})
    return uri, doc["name"] if doc else None


def _no_service(timeout: float = 60.0) -> bool:
    from ewc_fo.commands._lookup import running_service_uri

    deadline = time.monotonic() + timeout
    while running_service_uri() is not None:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--setups", default="uri,running,cold")
    args = ap.parse_args(argv)
    setups = args.setups.split(",")
    tmp = tempfile.mkdtemp(prefix="ewc_bench_early_")
    base = {k: v for k, v in os.environ.items() if k not in ("FIFTYONE_DATABASE_URI", "FIFTYONE_PRIVATE_DATABASE_PORT")}
    base.update(PYTHONPATH=str(ROOT), FIFTYONE_DO_NOT_TRACK="true", FIFTYONE_DATABASE_VALIDATION="false")
    print("| setup | case | exit | median s | runs |\n|---|---|---|---|---|", flush=True)
    if "uri" in setups:
        proc, uri = start_mongod(os.path.join(tmp, "db"))
        env = {**base, "FIFTYONE_DATABASE_URI": uri}
        try:
            subprocess.run([sys.executable, "-c", SETUP], env=env, check=True, capture_output=True)
            _time("uri", env, args.repeat)
        finally:
            stop(proc)
    local = {**base, "FIFTYONE_DATABASE_DIR": os.path.join(tmp, "local"),
             "FIFTYONE_CONFIG_PATH": os.path.join(tmp, "no-config.json")}
    foreign = _running_service()
    if "running" in setups and foreign:
        uri, first = foreign
        env = {**base, "FIFTYONE_CONFIG_PATH": os.path.join(tmp, "no-config.json")}
        cases = [("dataset typo", ["label", "bench-photoz-none", "--label-field", "labels"], 2)]
        if first:
            cases.append(("label field typo", ["label", first, "--label-field", "no_such_field_x"], 2))
        _time(f"local, service running (someone's, at {uri}; read-only)", env, args.repeat, cases)
    elif "running" in setups:
        holder = subprocess.Popen([sys.executable, "-c", HOLD], env=local, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            if holder.stdout.readline().strip() != "ready":
                raise RuntimeError("the process holding FiftyOne's database service did not start")
            _time("local, service running", local, args.repeat)
        finally:
            holder.stdin.close()
            holder.wait(timeout=120)
    if "cold" in setups and foreign:
        print("| local, no service | (skipped: a FiftyOne database service of this user is running) | | | |")
    elif "cold" in setups:
        if "running" not in setups:
            subprocess.run([sys.executable, "-c", SETUP], env=local, check=True, capture_output=True)
        if not _no_service():
            print("| local, no service | (skipped: a FiftyOne database service of this user is running) | | | |")
        else:
            _time("local, no service", local, args.repeat)


if __name__ == "__main__":
    main()
