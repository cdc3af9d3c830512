"""How fast a simple mistake is answered: a mistyped dataset name or label field.

Starts its own ``mongod`` (as the tests do), creates a small dataset there, then times
``ewc-fo`` commands in fresh processes (what a user waits for, imports included): a dataset
typo, a label field typo, and for comparison a correct ``summary``. Prints a Markdown table
(median of ``--repeat`` runs). Target from issue 22: under 3 s on an idle machine.

    python benchmarks/early_answers.py [--repeat 3]
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    tmp = tempfile.mkdtemp(prefix="ewc_bench_early_")
    proc, uri = start_mongod(os.path.join(tmp, "db"))
    env = {**os.environ, "FIFTYONE_DATABASE_URI": uri, "PYTHONPATH": str(ROOT), "FIFTYONE_DO_NOT_TRACK": "true"}
    try:
        setup = ("import fiftyone as fo\nd = fo.Dataset('bench-photos', persistent=True)\n"
                 "d.add_sample_field('labels', fo.EmbeddedDocumentField, embedded_doc_type=fo.Classifications)\n")
        subprocess.run([sys.executable, "-c", setup], env=env, check=True, capture_output=True)
        print("| case | exit | median s | runs |\n|---|---|---|---|")
        for name, cmd, want in CASES:
            times, rc = [], None
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                res = subprocess.run([sys.executable, "-m", "ewc_fo.cli", *cmd], env=env, capture_output=True, text=True)
                times.append(time.perf_counter() - t0)
                rc = res.returncode
            flag = "" if rc == want else f" (expected {want}: {res.stderr.strip()[-120:]})"
            print(f"| {name} | {rc}{flag} | {statistics.median(times):.2f} | "
                  f"{', '.join(f'{t:.2f}' for t in times)} |")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
