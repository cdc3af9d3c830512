"""A real Ray cluster (a head and a worker node) and a real ``mongod``, all inside a
network namespace of their own with only ``lo`` up, so every connection stays on
127.0.0.1 (Ray would otherwise bind the machine's outward address). Needs root.

Every process is started here and stopped here by its id: nodes run ``ray start --block``
(which stops its node's processes when it ends), and whatever is left in the namespace
at the end (``ip netns pids``) is killed too. ``ray stop`` is never used: it stops every
Ray process on the machine, by name.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil

from tests._mongod import mongod_binary

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEAD_PORT = 6379
DB_PORT = 27017


def netns_available() -> str | None:
    """None if a namespace can be made here, else why not."""
    if os.geteuid() != 0:
        return "needs root for `ip netns`"
    if shutil.which("ip") is None:
        return "no `ip` command"
    try:
        import ray  # noqa: F401
    except ImportError:
        return "ray is not installed (pip install 'ewc-fo[ray]')"
    return None


class NetnsCluster:
    def __init__(self) -> None:
        # short: Ray's unix sockets live under the temp dir (107-byte path limit)
        self.tmp = tempfile.mkdtemp(prefix="ewcray", dir="/tmp")
        self.ns = os.path.basename(self.tmp)
        self.address = f"127.0.0.1:{HEAD_PORT}"
        self.db_uri = f"mongodb://127.0.0.1:{DB_PORT}/?serverSelectionTimeoutMS=3000"
        self.env = {
            **os.environ,
            "PYTHONPATH": REPO,
            "FIFTYONE_DATABASE_URI": self.db_uri,
            "FIFTYONE_DATABASE_VALIDATION": "false",
            "FIFTYONE_DO_NOT_TRACK": "true",
            "FIFTYONE_DEFAULT_DATASET_DIR": os.path.join(self.tmp, "datasets"),
            "FIFTYONE_SHOW_PROGRESS_BARS": "false",
            "FIFTYONE_PLUGINS_DIR": os.path.join(REPO, "plugins"),
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "disabled",
            # notice a dead node in ~3 s, not ~30 s
            "RAY_health_check_period_ms": "1000",
            "RAY_health_check_failure_threshold": "3",
            "OMP_NUM_THREADS": "1",
        }
        self.mongod: subprocess.Popen | None = None
        self.nodes: list[subprocess.Popen] = []
        subprocess.run(["ip", "netns", "add", self.ns], check=True)
        try:
            self._exec_check(["ip", "link", "set", "lo", "up"])
            self.start_db()
            self.nodes.append(self._node(["--head", f"--port={HEAD_PORT}", "--include-dashboard=false",
                                          f"--temp-dir={self.tmp}/ray"]))
            self.add_worker_node()
        except BaseException:
            self.close()
            raise

    # ---- processes
    def _cmd(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]

    def _exec_check(self, argv: list[str]) -> None:
        subprocess.run(self._cmd(argv), check=True, env=self.env)

    def popen(self, argv: list[str], **kw) -> subprocess.Popen:
        """A process inside the namespace (``ip netns exec`` execs it: same pid)."""
        return subprocess.Popen(self._cmd(argv), env=self.env, cwd=REPO, **kw)

    def scenario(self, *args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess:
        p = subprocess.run(self._cmd([sys.executable, "-m", "tests.distributed._scenario", *args]),
                           env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError(f"scenario {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return p

    def scenario_cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
        """``ewc-fo ARGS`` inside the namespace (with one torch thread, like the reference)."""
        code = "import sys, torch; torch.set_num_threads(1); from ewc_fo.cli import main; sys.exit(main())"
        p = subprocess.run(self._cmd([sys.executable, "-c", code, *args]), env=self.env, cwd=REPO,
                           capture_output=True, text=True, timeout=timeout)
        if p.returncode != 0:
            raise AssertionError(f"ewc-fo {args[0]} failed ({p.returncode}):\n{p.stderr[-3000:]}")
        return p

    def start_db(self) -> None:
        dbpath = os.path.join(self.tmp, "mongod")
        os.makedirs(dbpath, exist_ok=True)
        log = os.path.join(dbpath, "mongod.log")
        with open(log, "ab") as f:
            self.mongod = self.popen([mongod_binary(), "--dbpath", dbpath, "--port", str(DB_PORT),
                                      "--bind_ip", "127.0.0.1", "--nounixsocket"],
                                     stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.mongod.poll() is not None:
                raise RuntimeError(f"mongod exited ({self.mongod.returncode}); see {log}")
            with open(log, "rb") as f:
                text = f.read()
            if text.count(b"Waiting for connections") > getattr(self, "_db_starts", 0):
                self._db_starts = text.count(b"Waiting for connections")
                return
            time.sleep(0.2)
        raise RuntimeError("mongod did not start within 60 s")

    def kill_db(self) -> None:
        if self.mongod is not None and self.mongod.poll() is None:
            self.mongod.send_signal(signal.SIGKILL)
            self.mongod.wait()

    def _node(self, args: list[str]) -> subprocess.Popen:
        ray = os.path.join(os.path.dirname(sys.executable), "ray")
        with open(os.path.join(self.tmp, f"node{len(self.nodes)}.log"), "ab") as log:
            return self.popen([ray, "start", "--block", "--num-cpus=1", "--object-store-memory=80000000",
                               "--disable-usage-stats", *args],
                              stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def add_worker_node(self) -> subprocess.Popen:
        """Another node joining the head (a second machine, as far as Ray can tell)."""
        self.nodes.append(self._node([f"--address={self.address}"]))
        alive = sum(n.poll() is None for n in self.nodes)
        self.scenario("wait-nodes", self.address, str(alive), timeout=180)
        return self.nodes[-1]

    def heal(self) -> None:
        """The database up and two nodes alive, whatever an earlier test left."""
        if self.mongod is None or self.mongod.poll() is not None:
            self.start_db()
        if sum(n.poll() is None for n in self.nodes) < 2:
            self.add_worker_node()

    def worker_node(self) -> subprocess.Popen:
        """The live worker node (the head is ``nodes[0]``; a killed node's replacement is last)."""
        return next(n for n in reversed(self.nodes[1:]) if n.poll() is None)

    def raylet_pid(self, node: subprocess.Popen) -> int:
        for c in psutil.Process(node.pid).children(recursive=True):
            if c.name() == "raylet":
                return c.pid
        raise AssertionError("no raylet under that node")

    def close(self) -> None:
        for p in reversed(self.nodes):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.nodes:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if self.mongod is not None and self.mongod.poll() is None:
            self.mongod.terminate()
            try:
                self.mongod.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.mongod.kill()
        # anything still in our namespace was started by this cluster
        for _ in range(3):
            out = subprocess.run(["ip", "netns", "pids", self.ns], capture_output=True, text=True).stdout
            pids = [int(x) for x in out.split()]
            if not pids:
                break
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        subprocess.run(["ip", "netns", "del", self.ns], check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
