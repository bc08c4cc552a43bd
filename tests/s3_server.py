"""A real S3 API on loopback for tests: moto's threaded server, and a bucket per test.

``moto_server()`` serves on 127.0.0.1 only, on a free port. ``S3Bucket`` talks to it through
plain boto3 (an outside writer: its uploads do not pass through the s3fs instance that the
code under test uses, so they do not invalidate that instance's caches, just as another
machine's uploads would not). Endpoint and fake credentials reach boto3 and s3fs through the
standard ``AWS_*`` environment variables (see the ``s3_bucket`` fixture in
``tests/conftest.py``), never through product code.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

from moto.moto_server import threaded_moto_server
from werkzeug.serving import WSGIRequestHandler, make_server

HOST = "127.0.0.1"
#: Keys per ListObjects page served by moto during the tests (AWS: 1000). Small, so that every
#: listing of a handful of files takes several pages and pagination is exercised for real.
PAGE_SIZE = 3

#: Variables that could point boto3/s3fs at a real account or another endpoint; cleared.
AWS_VARIABLES_CLEARED = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_ENDPOINT_URL_S3",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
)


def aws_environment(endpoint: str) -> dict[str, str]:
    """The environment that points boto3 and s3fs at ``endpoint`` with fake credentials."""
    return {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_CONFIG_FILE": "/nonexistent/aws-config",  # no developer profile leaks in
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/aws-credentials",
        "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance-metadata service
        "MOTO_S3_DEFAULT_MAX_KEYS": str(PAGE_SIZE),  # read by the server on every request
        "NO_PROXY": HOST,
        "no_proxy": HOST,
    }


#: Every request the server answered, as (method, path with query), in order.
REQUESTS: list[tuple[str, str]] = []


@contextmanager
def recorded_requests() -> Iterator[list[tuple[str, str]]]:
    """The requests the server answers inside the ``with`` block, as (method, path)."""
    start = len(REQUESTS)
    seen: list[tuple[str, str]] = []
    try:
        yield seen
    finally:
        seen.extend(REQUESTS[start:])


def _make_server(*args: Any, request_handler: type | None = None, **kwargs: Any) -> Any:
    """werkzeug's ``make_server`` with a request handler that sends one ``Server`` header.

    moto's responses carry ``Server: amazon.com`` and http.server adds its own, a duplicate
    that aiohttp's pure-Python parser (s3fs's HTTP client in Python's dev mode, ``-X dev``)
    rejects. Wraps whichever handler moto passes (none before moto 5.2.x).
    """
    base = request_handler or WSGIRequestHandler

    class OneServerHeader(base):  # type: ignore[misc, valid-type]
        def send_response(self, code: int, message: str | None = None) -> None:
            REQUESTS.append((self.command, self.path))
            self.log_request(code)
            self.send_response_only(code, message)
            self.send_header("Date", self.date_time_string())

    return make_server(*args, request_handler=OneServerHeader, **kwargs)


@contextmanager
def moto_server() -> Iterator[str]:
    """moto's S3 server on 127.0.0.1 and a free port; yields its endpoint URL."""
    requests_log = logging.getLogger("werkzeug")  # one INFO line per request otherwise
    level = requests_log.level
    requests_log.setLevel(logging.WARNING)
    server = threaded_moto_server.ThreadedMotoServer(ip_address=HOST, port=0, verbose=False)
    # The server is built in start()'s thread, and start() waits until it is.
    with mock.patch.object(threaded_moto_server, "make_server", _make_server):
        server.start()
    try:
        host, port = server.get_host_and_port()
        assert host == HOST, host
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        # stop() ends the serving loop but leaves the listening socket open; close it.
        if server._server is not None:
            server._server.server_close()
        requests_log.setLevel(level)


@dataclass
class S3Bucket:
    """One bucket on the test server, reached with a plain boto3 client."""

    name: str
    client: Any  # botocore S3 client

    def url(self, key: str = "") -> str:
        """``s3://bucket/key``."""
        return f"s3://{self.name}/{key}".rstrip("/")

    def put(self, key: str, data: bytes) -> str:
        """Upload ``data`` in one PUT; return the object's ETag (without quotes)."""
        return self.client.put_object(Bucket=self.name, Key=key, Body=data)["ETag"].strip('"')

    def etag(self, key: str) -> str:
        """The object's ETag as the server reports it (without quotes)."""
        return self.client.head_object(Bucket=self.name, Key=key)["ETag"].strip('"')

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=key)["Body"].read()

    def keys(self, prefix: str = "") -> list[str]:
        """Every key under ``prefix``, through the paginator (pages of ``PAGE_SIZE``)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(
            Bucket=self.name, Prefix=prefix
        )
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


def md5_hex(data: bytes) -> str:
    """What S3 reports as the ETag of an object uploaded in one PUT."""
    return hashlib.md5(data).hexdigest()
