"""A real two-node Ray cluster on this machine for tests: ``ray start --head`` and a second
``ray start --address=...``, each ``--block`` in a process group of its own.

``start_ray_cluster()`` starts both nodes, waits until a driver in a *subprocess* sees both
alive (never ``ray.init`` in the calling process: pytest may already hold the session's local
Ray from ``ray_support.py``, and a process holds one Ray connection only), and yields a
:class:`RayCluster`: ``address`` (``"127.0.0.1:<gcs port>"``), ``node_ids`` by node name,
``resources`` (a custom resource per node, to pin tasks to it), ``env()`` for subprocess
drivers, ``run_driver()``, ``logs`` and the measured ``startup_seconds``. On exit, even when
the body raises, every process of the cluster is stopped: SIGTERM to each ``ray start`` group,
SIGKILL to what is left, then a sweep of ``/proc`` for anything else of this cluster: Ray's
workers leave the group (they call ``setsid``) and rename themselves (``ray::IDLE``), so they
are found by the log files they hold open under the cluster's temp dir; a driver still
connected when the cluster stops holds such files too and is killed with it (never the
calling process). Never ``ray stop``: it kills every Ray on the machine (the session's local
Ray, other agents'). The ``two_node_ray_cluster`` fixture in ``tests/conftest.py`` starts one
per session.

What it isolates, and what Ray 2.60 does not let it:

- Ports: every port Ray can pick for itself is given as 0 (GCS, node manager, object
  manager, workers, metrics, runtime-env and dashboard agents), so the kernel hands out free
  ones with no probe-then-bind race; the two ports Ray will not self-pick (Ray client server,
  dashboard API) are probed free ports. The defaults (6379, 10001, 8265, 52365, workers
  10002-19999) would clash with any other local Ray.
- Files: each node has its own ``--temp-dir`` (Ray 2.60 takes it per node: ``Node._init_temp``
  prefers the node's own ``--temp-dir`` over the head's) under one short root in ``/tmp``:
  Ray's unix socket paths must fit in 107 bytes. ``ray start`` records its address in that
  temp dir, not in ``/tmp/ray/ray_current_cluster``, so a later bare ``ray.init()`` elsewhere
  does not join this cluster.
- Authentication: Ray 2.60 turns token authentication on by default and would share
  ``~/.ray/auth_token`` with every other Ray of the user; this cluster gets a token of its own
  in ``RAY_AUTH_TOKEN``, which ``env()`` passes to drivers; nothing is written to the home
  folder. A driver with another token is refused (after about 20 s of retries).
- Network: ``--node-ip-address=127.0.0.1`` is given, but on Linux Ray 2.60 rewrites a
  loopback node address to the host's routable one (``resolve_ip_for_localhost``, by design:
  ray-project/ray#26293) and its gRPC servers (GCS, raylet) listen on every interface, with
  no option to change either. Nothing leaves the machine (both nodes are here), the token
  guards the ports, and the HTTP servers this module controls (dashboard API) bind 127.0.0.1.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
HEAD, WORKER = "head", "worker"
#: The Ray CLI of the interpreter running the tests (the project's virtualenv).
RAY = Path(sys.executable).with_name("ray")
#: Per node: small, because the tests move kilobytes; Ray's default is 30% of memory per node.
OBJECT_STORE_BYTES = 256 * 1024**2
#: Run ``ray start`` so that it gets SIGTERM (and stops its node) when the process that
#: started it dies without running ``finally`` (SIGKILL, ``os._exit``): Linux's parent-death
#: signal, which survives exec, set by util-linux's ``setpriv`` (a ``preexec_fn`` is unsafe
#: in a process with threads, as pytest's may be). Without ``setpriv``, no such net. Linux
#: counts the *thread* that started it as the parent: start the cluster from a thread that
#: outlives it (pytest's fixtures run on the main thread).
_SETPRIV = shutil.which("setpriv")
_DIE_WITH_PARENT = [_SETPRIV, "--pdeathsig", "TERM", "--"] if _SETPRIV else []
#: How long a ``ray start`` group gets between SIGTERM and SIGKILL.
STOP_GRACE_SECONDS = 15.0

#: A driver run in a subprocess: waits until every named resource is on an alive node, then
#: prints ``{resource: node id}`` and the ports Ray reports for each node as JSON.
_READY_SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import ray

    wanted, deadline = sys.argv[1:], time.monotonic() + float(os.environ["WAIT_SECONDS"])
    ray.init(address=os.environ["RAY_ADDRESS"], log_to_driver=False, logging_level="ERROR")
    while True:
        alive = [n for n in ray.nodes() if n["Alive"]]
        found = {r: n for n in alive for r in wanted if n["Resources"].get(r)}
        if len(found) == len(wanted) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    print(json.dumps({r: n["NodeID"] for r, n in found.items()}))
    sys.exit(0 if len(found) == len(wanted) else 1)
    """
)


def node_resource(name: str) -> str:
    """The custom resource that names node ``name``."""
    return f"wsi_test_{name}"


class RayClusterError(RuntimeError):
    """The cluster did not start, or did not stop; the message ends with Ray's log tails and
    ``root`` is the cluster's temp dir (kept, for the logs)."""

    def __init__(self, message: str, root: Path) -> None:
        super().__init__(message)
        self.root = root


@dataclass
class RayNode:
    """One ``ray start --block`` process (the leader of its process group) and its files."""

    name: str
    temp_dir: Path
    output: Path  # what ``ray start`` itself printed
    process: subprocess.Popen[bytes]
    node_id: str = ""

    @property
    def resource(self) -> str:
        """The custom resource only this node has (1 unit): ask for a fraction of it, e.g.
        ``resources={node.resource: 0.01}``, to pin a task here without limiting concurrency."""
        return node_resource(self.name)

    @property
    def logs(self) -> Path:
        """This node's Ray logs (raylet, gcs_server, workers, ...)."""
        return self.temp_dir / "session_latest" / "logs"


@dataclass
class RayCluster:
    """A running two-node cluster: where it is, how to reach it, what it runs."""

    root: Path
    token: str
    nodes: dict[str, RayNode] = field(default_factory=dict)
    address: str = ""  # "127.0.0.1:<gcs port>"
    startup_seconds: float = 0.0

    @property
    def node_ids(self) -> dict[str, str]:
        """Ray's node id (hex) by node name (``"head"``, ``"worker"``)."""
        return {name: node.node_id for name, node in self.nodes.items()}

    @property
    def resources(self) -> dict[str, str]:
        """The custom resource that pins a task to a node, by node name."""
        return {name: node.resource for name, node in self.nodes.items()}

    @property
    def logs(self) -> dict[str, Path]:
        """Each node's Ray log folder, by node name."""
        return {name: node.logs for name, node in self.nodes.items()}

    def env(self) -> dict[str, str]:
        """A copy of ``os.environ`` that points Ray drivers at this cluster (``RAY_ADDRESS``),
        with its token and without usage stats."""
        return _without(os.environ, "RAY_AUTH_TOKEN_PATH") | {
            "RAY_ADDRESS": self.address,
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
        }

    def run_driver(
        self, code: str, *args: str, timeout: float = 120.0, env: dict[str, str] | None = None
    ) -> str:
        """Run ``code`` in a new Python process with :meth:`env` (plus ``env``); return its
        stdout, or raise with its output and the log tails when it fails."""
        result = subprocess.run(
            [sys.executable, "-c", code, *args],
            env=self.env() | (env or {}),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            output = result.stdout + result.stderr
            raise self.error(f"driver failed ({result.returncode}):\n{output}")
        return result.stdout

    def pids(self) -> set[int]:
        """Every live process of this cluster (see :func:`cluster_pids`)."""
        groups = {node.process.pid for node in self.nodes.values()}
        return cluster_pids(self.root, groups)

    def listening_ports(self) -> set[int]:
        """Every TCP port a process of this cluster listens on right now."""
        return listening_ports(self.pids())

    def error(self, message: str) -> RayClusterError:
        """A :class:`RayClusterError` saying ``message``, then the tails of Ray's logs."""
        return RayClusterError(message + self.log_tails(), self.root)

    def log_tails(self, lines: int = 15) -> str:
        """The last lines of ``ray start``'s output and of the main logs of each node."""
        parts = []
        for node in self.nodes.values():
            files = [node.output] + [
                node.logs / name
                for name in ("raylet.out", "raylet.err", "gcs_server.out", "gcs_server.err")
            ]
            for path in files:
                if path.is_file():
                    tail = path.read_text(errors="replace").splitlines()[-lines:]
                    if tail:
                        parts.append(f"--- {node.name}: {path}\n" + "\n".join(tail))
        return "\n" + "\n".join(parts)

    # Start and stop -------------------------------------------------------------------------

    def _spawn(self, name: str, extra: list[str], cpus: int, object_store_bytes: int) -> RayNode:
        """Start ``ray start --block`` for node ``name`` in a new session (process group)."""
        temp_dir = self.root / name
        output = self.root / f"{name}.out"
        command = [
            *_DIE_WITH_PARENT,
            str(RAY), "start", "--block", *extra,
            f"--node-ip-address={HOST}",  # Ray 2.60 rewrites it: see the module docstring
            f"--temp-dir={temp_dir}",
            f"--num-cpus={cpus}", "--num-gpus=0",
            f"--resources={json.dumps({node_resource(name): 1})}",
            f"--object-store-memory={object_store_bytes}",
            # 0: the component binds a port the kernel picks, and reports it to the GCS.
            "--node-manager-port=0", "--object-manager-port=0",
            "--min-worker-port=0", "--max-worker-port=0",
            "--metrics-export-port=0", "--runtime-env-agent-port=0",
            "--dashboard-agent-listen-port=0", "--dashboard-agent-grpc-port=0",
            "--disable-usage-stats", "--log-style=record", "--log-color=false",
        ]  # fmt: skip
        environment = _without(os.environ, "RAY_ADDRESS", "RAY_AUTH_TOKEN_PATH") | {
            "RAY_USAGE_STATS_ENABLED": "0",
            "RAY_AUTH_MODE": "token",
            "RAY_AUTH_TOKEN": self.token,
            # On SIGTERM a node first asks the GCS to drain it and waits up to 30 s (for Ray
            # Serve); with both nodes stopping that wait is pure delay.
            "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0",
        }
        with output.open("wb") as sink:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,  # its own process group: one signal reaches it all
            )
        node = self.nodes[name] = RayNode(name, temp_dir, output, process)
        return node

    def _check_alive(self, what: str) -> None:
        for node in self.nodes.values():
            if node.process.poll() is not None:
                raise self.error(
                    f"{what}: `ray start` of the {node.name} node exited with "
                    f"{node.process.returncode}"
                )

    def start(self, cpus_per_node: int, object_store_bytes: int, timeout: float) -> None:
        """Start the head, then the worker node; return when a driver sees both alive."""
        began = time.monotonic()
        deadline = began + timeout
        head = self._spawn(
            HEAD,
            [
                "--head",
                "--port=0",  # the GCS binds a free port and ray start records it
                f"--ray-client-server-port={free_port()}",  # 0 is refused here
                # No dashboard UI; Ray still starts its API server (job submission), and
                # would take 8265 or the next free port above it: give it one of its own.
                "--include-dashboard=false",
                f"--dashboard-host={HOST}",
                f"--dashboard-port={free_port()}",
            ],
            cpus_per_node,
            object_store_bytes,
        )
        # Written by `ray start` once the head is up: "<node ip>:<gcs port>".
        address_file = head.temp_dir / "ray_current_cluster"
        while not (address_file.is_file() and address_file.read_text().strip()):
            self._check_alive("starting the head")
            if time.monotonic() > deadline:
                raise self.error(f"the head did not start in {timeout} s")
            time.sleep(0.05)
        port = int(address_file.read_text().strip().rpartition(":")[2])
        self.address = f"{HOST}:{port}"
        self._spawn(WORKER, [f"--address={self.address}"], cpus_per_node, object_store_bytes)
        # The driver's interpreter start overlaps with the worker node's.
        ready = subprocess.Popen(
            [sys.executable, "-c", _READY_SCRIPT, *self.resources.values()],
            env=self.env() | {"WAIT_SECONDS": str(max(1.0, deadline - time.monotonic()))},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            while ready.poll() is None:
                self._check_alive("waiting for both nodes")
                if time.monotonic() > deadline + 30:
                    raise self.error(f"no driver answer in {timeout} s")
                time.sleep(0.05)
        finally:
            if ready.poll() is None:
                ready.kill()
            stdout, stderr = ready.communicate()
        if ready.returncode != 0:
            raise self.error(f"not every node came up in {timeout} s: {stdout}{stderr}")
        ids = json.loads(stdout.strip().splitlines()[-1])
        for node in self.nodes.values():
            node.node_id = ids[node.resource]
        self.startup_seconds = time.monotonic() - began

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop every process of the cluster; raise if one survives SIGKILL.

        Both groups get SIGTERM at once (the worker node's first) and are waited for
        together: one after the other costs seconds more and proves nothing more.
        """
        groups = [node.process for node in reversed(list(self.nodes.values()))]
        for process in groups:
            _signal(process.pid, signal.SIGTERM, group=True)
        deadline = time.monotonic() + grace
        for process in groups:
            _end_group(process, deadline)
        # Anything that left the groups (Ray's workers call setsid) or was orphaned: found by
        # the files it holds open.
        leftovers = self.pids()
        for pid in leftovers:
            _signal(pid, signal.SIGKILL)
        survivors = _wait_gone(leftovers, 10.0)
        if survivors:
            raise self.error(f"processes of {self.root} survive SIGKILL: {survivors}")


def _without(environment: Mapping[str, str], *names: str) -> dict[str, str]:
    """A copy of ``environment`` without ``names`` (settings that would point Ray elsewhere)."""
    return {k: v for k, v in environment.items() if k not in names}


def _signal(pid: int, signum: int, group: bool = False) -> None:
    """Send ``signum`` to a process (or its group); one that is gone already is fine."""
    try:
        if group:
            os.killpg(pid, signum)
        else:
            os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _end_group(process: subprocess.Popen[bytes], deadline: float) -> None:
    """Wait until the group led by ``process`` (already sent SIGTERM) is gone, up to
    ``deadline``; then SIGKILL to whatever of it is left. Reaps the leader."""
    group = process.pid
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=max(0.0, deadline - time.monotonic()))
    # The leader may be gone while members of its group still shut down.
    while _group_members(group) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal(group, signal.SIGKILL, group=True)
    process.wait(timeout=10)
    _wait_gone(_group_members(group), 10.0)


def _wait_gone(pids: Iterable[int], timeout: float) -> set[int]:
    """Wait until none of ``pids`` runs (zombies count as gone); return those that still do."""
    remaining = set(pids)
    deadline = time.monotonic() + timeout
    while remaining:
        remaining = {pid for pid in remaining if _stat(pid) is not None}
        if not remaining or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    return remaining


# /proc: which processes are this cluster's, and what they listen on --------------------------


def _stat(pid: int) -> tuple[str, int] | None:
    """``(state, process group)`` of a live process; None when gone or a zombie (a zombie
    holds no memory, file or port: only its parent's bookkeeping)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name is in parentheses and may hold spaces: fields start after the last ")".
    fields = text.rpartition(")")[2].split()
    state, pgid = fields[0], int(fields[2])
    return None if state in "ZX" else (state, pgid)


def _group_members(group: int) -> set[int]:
    return {pid for pid, (_, pgid) in _live_processes() if pgid == group}


def _live_processes() -> Iterator[tuple[int, tuple[str, int]]]:
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            yield int(entry.name), stat


def _mentions(pid: int, root: str) -> bool:
    """Whether the process's command line, or a file it holds open, lies under ``root``.

    The command line alone misses Ray's workers and agents: they rename themselves
    (``ray::IDLE``, ``ray::DashboardAgent``), but their stdout and stderr stay open on log
    files in the node's temp dir.
    """
    try:
        if root in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
            return True
        fds = os.scandir(f"/proc/{pid}/fd")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return False
    with fds:
        for fd in fds:
            try:
                if os.readlink(fd.path).startswith(root):
                    return True
            except OSError:  # closed since the listing
                continue
    return False


def cluster_pids(root: Path, groups: Iterable[int] = ()) -> set[int]:
    """Live processes (not this one) in one of ``groups``, or whose command line or open
    files lie under ``root``."""
    groups, marker, me = set(groups), str(root) + os.sep, os.getpid()
    return {
        pid
        for pid, (_, pgid) in _live_processes()
        if pid != me and (pgid in groups or _mentions(pid, marker))
    }


def listening_ports(pids: Iterable[int]) -> set[int]:
    """The TCP ports (IPv4 and IPv6) on which any of ``pids`` has a listening socket."""
    inodes: set[str] = set()
    for pid in pids:
        try:
            fds = os.scandir(f"/proc/{pid}/fd")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        with fds:
            for fd in fds:
                try:
                    target = os.readlink(fd.path)
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[len("socket:[") : -1])
    return {port for port, inode in listening_sockets() if inode in inodes}


def listening_sockets() -> list[tuple[int, str]]:
    """``(port, socket inode)`` of every listening TCP socket on the machine."""
    sockets = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                sockets.append((int(fields[1].rpartition(":")[2], 16), fields[9]))
    return sockets


def free_port() -> int:
    """A TCP port nothing listens on right now (the kernel's pick on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def short_temp_root() -> Path:
    """``/tmp`` where it exists: a ``$TMPDIR`` such as macOS's is too long for Ray's sockets."""
    return Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())


# The context manager -------------------------------------------------------------------------


class RayClusterUnavailable(RuntimeError):
    """This machine cannot run the cluster (no Ray CLI, no /proc); the fixture skips."""


@contextmanager
def start_ray_cluster(
    *,
    cpus_per_node: int = 1,
    object_store_bytes: int = OBJECT_STORE_BYTES,
    timeout: float = 120.0,
) -> Iterator[RayCluster]:
    """A head and a worker node, ``cpus_per_node`` CPUs each; yields the :class:`RayCluster`
    once both are alive. Everything is stopped on exit, also when the body raises; the temp
    dir (logs) is removed, unless the body or the start-up failed: then it is kept and named
    on stderr."""
    if not RAY.is_file():
        raise RayClusterUnavailable(f"no Ray CLI at {RAY} (install ray[data])")
    if not Path("/proc/self/stat").is_file():
        raise RayClusterUnavailable("needs Linux's /proc to find and stop the cluster's processes")
    root = Path(tempfile.mkdtemp(prefix="ray-", dir=short_temp_root()))
    cluster = RayCluster(root=root, token=secrets.token_hex(32))
    keep = False
    try:
        cluster.start(cpus_per_node, object_store_bytes, timeout)
        yield cluster
    except Exception:
        keep = True
        raise
    finally:
        try:
            cluster.stop()
        finally:
            if keep:
                print(f"Ray cluster logs kept in {root}", file=sys.stderr)
            else:
                _remove(cluster)


def _remove(cluster: RayCluster) -> None:
    """Delete the cluster's temp dir. Seen once: files written there after :meth:`stop`
    returned, so that the first removal left some; then sweep again, say what was found,
    and retry."""
    for attempt in range(3):
        shutil.rmtree(cluster.root, ignore_errors=True)
        if not cluster.root.exists():
            return
        late = cluster.pids()
        left = sorted(str(p.relative_to(cluster.root)) for p in cluster.root.rglob("*"))
        print(
            f"{cluster.root} not removed (attempt {attempt + 1}): cluster processes {late}, "
            f"files {left[:20]}",
            file=sys.stderr,
        )
        for pid in late:
            _signal(pid, signal.SIGKILL)
        _wait_gone(late, 5.0)
        time.sleep(0.5)
