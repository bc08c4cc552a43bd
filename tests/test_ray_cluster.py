"""The two-node Ray cluster of ``tests/ray_cluster.py``: what batched backfills on an existing
cluster (``RAY_ADDRESS``) rely on, observed from real drivers.

Every driver is a subprocess given ``cluster.env()``: the pytest process never joins the
cluster (it may hold the session's local Ray). The tests share the session's cluster
(``two_node_ray_cluster``) and only read from it; the stop test starts one of its own.
"""

from __future__ import annotations

import json
import shutil
import socket
import textwrap
from pathlib import Path

import pytest
from ray_cluster import (
    HEAD,
    HOST,
    WORKER,
    RayCluster,
    RayClusterError,
    RayClusterUnavailable,
    cluster_pids,
    listening_sockets,
    start_ray_cluster,
)

from wsi_core.openslide import OpenSlide

#: Runs one task pinned to each node (by its custom resource); prints {node name: node id}.
PINNED_TASKS = textwrap.dedent(
    """
    import json, sys
    import ray

    ray.init(log_to_driver=False, logging_level="ERROR")  # RAY_ADDRESS names the cluster

    @ray.remote(num_cpus=1)
    def where():
        return ray.get_runtime_context().get_node_id()

    resources = json.loads(sys.argv[1])
    refs = {n: where.options(resources={r: 0.01}).remote() for n, r in resources.items()}
    print(json.dumps({name: ray.get(ref) for name, ref in refs.items()}))
    """
)


def test_tasks_pinned_to_each_node_report_its_id(two_node_ray_cluster: RayCluster) -> None:
    """A task asking for a node's resource runs there: two distinct nodes, the fixture's ids."""
    cluster = two_node_ray_cluster
    seen = json.loads(cluster.run_driver(PINNED_TASKS, json.dumps(cluster.resources)))
    assert seen == cluster.node_ids
    assert len(set(seen.values())) == 2
    assert all(len(node_id) == 56 for node_id in seen.values())  # 28 bytes, hex
    assert cluster.address.startswith(f"{HOST}:")


def test_each_node_has_its_own_temp_dir(two_node_ray_cluster: RayCluster) -> None:
    """Each node logs under its own ``--temp-dir``; the address goes to the head's temp dir,
    not to ``/tmp/ray``, where a bare ``ray.init()`` elsewhere would find and join it."""
    cluster = two_node_ray_cluster
    for name in (HEAD, WORKER):
        logs = cluster.logs[name]
        assert logs.is_relative_to(cluster.root / name)
        raylet_log = (logs / "raylet.out").read_text(errors="replace")
        assert cluster.node_ids[name] in raylet_log
    port = cluster.address.rpartition(":")[2]
    head_record = (cluster.root / HEAD / "ray_current_cluster").read_text()
    assert head_record.endswith(f":{port}")
    shared = Path("/tmp/ray/ray_current_cluster")
    assert not shared.exists() or not shared.read_text().endswith(f":{port}")


def test_ray_data_map_runs_on_both_nodes(two_node_ray_cluster: RayCluster) -> None:
    """A Ray Data ``map`` with one CPU per task spreads over both one-CPU nodes; every row
    comes back once, with the id of the node that mapped it."""
    driver = textwrap.dedent(
        """
        import json, time
        import ray
        import ray.data

        ray.init(log_to_driver=False, logging_level="ERROR")
        ray.data.DataContext.get_current().enable_progress_bars = False

        def tag(row):
            time.sleep(0.02)  # tasks overlap, so the second CPU (the other node) is used
            return {"id": row["id"], "node": ray.get_runtime_context().get_node_id()}

        rows = ray.data.range(64, override_num_blocks=16).map(tag, num_cpus=1).take_all()
        print(json.dumps([[row["id"], row["node"]] for row in rows]))
        """
    )
    cluster = two_node_ray_cluster
    rows = json.loads(cluster.run_driver(driver).strip().splitlines()[-1])
    assert sorted(row_id for row_id, _ in rows) == list(range(64))
    nodes = {node for _, node in rows}
    assert nodes == set(cluster.node_ids.values())


def test_workers_import_the_project_and_read_a_real_slide(
    two_node_ray_cluster: RayCluster, shared_data: Path
) -> None:
    """On each node a task imports ``wsi_core`` and reads a real slide's level dimensions:
    the same numbers as in this process."""
    slide = shared_data / "slides" / "CMU-1-Small-Region.svs"
    if not slide.is_file():
        pytest.skip(f"{slide} not found")
    driver = textwrap.dedent(
        """
        import json, sys
        import ray

        ray.init(log_to_driver=False, logging_level="ERROR")

        @ray.remote(num_cpus=1)
        def dimensions(path):
            import wsi_core
            from wsi_core.openslide import OpenSlide

            with OpenSlide(path) as slide:
                levels = [list(d) for d in slide.level_dimensions]
            node = ray.get_runtime_context().get_node_id()
            return {"node": node, "levels": levels, "module": wsi_core.__file__}

        path, resources = sys.argv[1], json.loads(sys.argv[2])
        pinned = {n: dimensions.options(resources={r: 0.01}) for n, r in resources.items()}
        refs = {name: task.remote(path) for name, task in pinned.items()}
        print(json.dumps({name: ray.get(ref) for name, ref in refs.items()}))
        """
    )
    cluster = two_node_ray_cluster
    answers = json.loads(cluster.run_driver(driver, str(slide), json.dumps(cluster.resources)))
    with OpenSlide(slide) as local:
        expected = [list(d) for d in local.level_dimensions]
    assert expected[0] == [2220, 2967]  # CMU-1-Small-Region: one level, 2220 x 2967
    import wsi_core

    for name, answer in answers.items():
        assert answer["node"] == cluster.node_ids[name]
        assert answer["levels"] == expected
        assert answer["module"] == wsi_core.__file__


def test_the_session_local_ray_and_the_cluster_coexist(
    two_node_ray_cluster: RayCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The pytest process's own local Ray (``ray_support``, shared with ``test_ray.py``) and
    the cluster run side by side: neither joins the other, both run tasks."""
    ray = pytest.importorskip("ray")
    import ray_support

    ray_support.start_ray(tmp_path_factory.mktemp("ray-local"))
    try:
        local_nodes = [node["NodeID"] for node in ray.nodes()]

        @ray.remote(num_cpus=1)
        def where() -> str:
            return ray.get_runtime_context().get_node_id()

        assert ray.get(where.remote()) == local_nodes[0]
        assert len(local_nodes) == 1
        assert set(local_nodes).isdisjoint(two_node_ray_cluster.node_ids.values())
        cluster = two_node_ray_cluster
        seen = json.loads(cluster.run_driver(PINNED_TASKS, json.dumps(cluster.resources)))
        assert seen == cluster.node_ids
    finally:
        ray_support.stop_ray()


def _bindable(port: int) -> bool:
    """Whether this process can bind ``port`` on loopback (SO_REUSEADDR: connections of the
    old listener lingering in TIME_WAIT do not count, a listener does)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


def _fail_inside(observed: dict) -> None:
    """Start a cluster, run tasks on both nodes, note what runs, then raise."""
    with start_ray_cluster() as cluster:
        observed["cluster"] = cluster
        cluster.run_driver(PINNED_TASKS, json.dumps(cluster.resources))
        observed["pids"], observed["ports"] = cluster.pids(), cluster.listening_ports()
        raise KeyError("the body failed")


def test_everything_stops_when_the_body_raises() -> None:
    """A body that raises, after workers ran on both nodes: afterwards no process of the
    cluster runs, no port it listened on is listened on, the error is the body's, and the
    logs are kept for it."""
    observed: dict = {}
    try:
        with pytest.raises(KeyError, match="the body failed"):
            _fail_inside(observed)
    except RayClusterUnavailable as error:
        pytest.skip(str(error))
    cluster, pids, ports = observed["cluster"], observed["pids"], observed["ports"]
    try:
        # A gcs_server, two raylets, their agents, the workers that ran the tasks, ...
        assert len(pids) >= 8 and len(ports) >= 6
        assert all(node.process.returncode is not None for node in cluster.nodes.values())
        groups = {node.process.pid for node in cluster.nodes.values()}
        assert cluster_pids(cluster.root, groups) == set()
        assert all(not Path(f"/proc/{pid}").exists() or _zombie(pid) for pid in pids)
        assert ports.isdisjoint(port for port, _ in listening_sockets())
        assert all(_bindable(port) for port in ports)
        assert (cluster.logs[WORKER] / "raylet.out").is_file()  # kept: the body failed
    finally:
        shutil.rmtree(cluster.root, ignore_errors=True)


def _zombie(pid: int) -> bool:
    """A process that exited and waits for its parent to read its status."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] in "ZX"
    except FileNotFoundError:
        return True


def test_a_node_that_cannot_start_raises_with_its_log() -> None:
    """An object store below Ray's minimum: ``ray start`` exits, the error carries its words,
    and nothing of the attempt keeps running."""
    with pytest.raises(RayClusterError) as raised, start_ray_cluster(object_store_bytes=1024**2):
        pytest.fail("started with a 1 MiB object store")
    message = str(raised.value)
    assert "`ray start` of the head node exited" in message
    assert "object store" in message.lower() or "object_store_memory" in message
    try:
        assert f"--- head: {raised.value.root / 'head.out'}" in message
        assert cluster_pids(raised.value.root) == set()
    finally:
        shutil.rmtree(raised.value.root, ignore_errors=True)
