"""Shared fixtures: where the third-party test data lives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(
    os.environ.get(
        "WSI_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"
    )
)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the project root; tests that need it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real test data not found at {SHARED_DATA} (a user's clone has no ../shared)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def s3_endpoint():
    """A real S3 API (moto's server) on 127.0.0.1 and a free port, for the whole session."""
    from s3_server import moto_server

    with moto_server() as endpoint:
        yield endpoint


@pytest.fixture
def s3_bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    """A new, empty bucket on the test server (an ``s3_server.S3Bucket``). The endpoint and
    fake credentials are set in ``AWS_*`` variables for this test only, and s3fs's cached
    filesystem instances are dropped before and after, so no client outlives its settings."""
    import uuid

    import boto3
    import s3fs
    from s3_server import AWS_VARIABLES_CLEARED, S3Bucket, aws_environment

    for name in AWS_VARIABLES_CLEARED:
        monkeypatch.delenv(name, raising=False)
    for name, value in aws_environment(s3_endpoint).items():
        monkeypatch.setenv(name, value)
    s3fs.S3FileSystem.clear_instance_cache()
    client = boto3.client("s3")
    bucket = S3Bucket(f"wsi-test-{uuid.uuid4().hex[:12]}", client)
    client.create_bucket(Bucket=bucket.name)
    try:
        yield bucket
    finally:
        client.close()
        s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture(scope="session")
def postgres_url():
    """A real PostgreSQL server on 127.0.0.1 and a free port for the whole session: a throwaway
    cluster in a temporary directory (``tests/pg_server.py``), stopped and deleted at the end.
    Yields ``postgresql://USER:PASSWORD@127.0.0.1:PORT/DB``; a test that needs rows of its own
    takes ``pg_server.database(postgres_url)``. Skips, saying how to install it, where no
    PostgreSQL server can be run; a server that is installed but fails to start is an error."""
    from contextlib import ExitStack

    from pg_server import PostgresUnavailable, postgres_server

    with ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailable as error:
            pytest.skip(str(error))
        yield url


@pytest.fixture(scope="session")
def two_node_ray_cluster():
    """A real two-node Ray cluster on this machine for the whole session
    (``tests/ray_cluster.py``): a head and a worker node, one CPU each, a custom resource per
    node, free ports, a temp dir per node and a token of its own. Yields a
    ``ray_cluster.RayCluster``; drivers run as subprocesses with ``cluster.env()``
    (``RAY_ADDRESS``), never in the pytest process. Skips where Ray's CLI or /proc is missing;
    a cluster that fails to start is an error. At the end no process of it may survive and
    none of its ports may still be listened on."""
    from contextlib import ExitStack

    from ray_cluster import RayClusterUnavailable, listening_sockets, start_ray_cluster

    with ExitStack() as stack:
        try:
            cluster = stack.enter_context(start_ray_cluster())
        except RayClusterUnavailable as error:
            pytest.skip(str(error))
        yield cluster
        ports = cluster.listening_ports()
    assert cluster.pids() == set()
    assert ports.isdisjoint(port for port, _ in listening_sockets())
