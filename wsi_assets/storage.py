"""File access for local folders and fsspec URLs (``s3://``, ``memory://``, ...).

Credentials for remote stores come from the environment (``AWS_*``, instance roles), never
from here. Writes are atomic: locally a hidden temp file in the target folder, then
``os.replace``; remotely a single ``pipe_file`` (one PUT, or a multipart upload that becomes
visible only when complete).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

#: Data version of a file that does not exist (shown in the UI as the source's version).
MISSING = "missing"

T = TypeVar("T")


def is_url(uri: str) -> bool:
    """True for ``scheme://...`` locations, False for local paths."""
    return "://" in uri and not uri.startswith("file://")


def join(root: str, *parts: str) -> str:
    """``root`` joined with ``parts`` ('/' for URLs, the OS separator for local paths)."""
    if is_url(root):
        return posixpath.join(root.rstrip("/"), *parts)
    return os.path.join(root, *parts)


def normalize(uri: str) -> str:
    """``uri`` with ``.`` and ``..`` segments resolved (``a/b/../c`` -> ``a/c``)."""
    if is_url(uri):
        scheme, rest = uri.split("://", 1)
        return f"{scheme}://{posixpath.normpath(rest)}"
    return os.path.normpath(uri)


def parent(uri: str) -> str:
    """The folder that holds ``uri``."""
    return posixpath.dirname(uri) if is_url(uri) else os.path.dirname(uri)


def basename(uri: str) -> str:
    """The file name of ``uri``."""
    return posixpath.basename(uri) if is_url(uri) else os.path.basename(uri)


def filesystem(uri: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The fsspec filesystem and the in-filesystem path of ``uri``.

    Remote filesystems come without a directory-listing cache. s3fs keeps the first listing
    of a folder for the life of its (process-wide, shared) instance, and answers ``info`` and
    ``exists`` from it: in a long-lived process (the sensor's code server, ``run_demo``,
    in-process runs) an object uploaded later looked absent, and one overwritten later kept
    its old size and ETag (reading it then failed with ``FileExpired``). Every call asks the
    store instead: one HEAD or one (paginated) LIST.
    """
    if is_url(uri):
        try:
            return fsspec.core.url_to_fs(uri, use_listings_cache=False)
        except TypeError:  # a filesystem that takes no such option (e.g. sftp) caches nothing
            pass
    return fsspec.core.url_to_fs(uri)


def file_info(uri: str) -> dict[str, Any] | None:
    """fsspec ``info`` of a file, or None where there is no such file.

    Only "not found" means absent: a denied or failed request raises, so that a slide the
    store will not show us is never recorded as missing (nor its annotations as absent)."""
    fs, path = filesystem(uri)
    try:
        info = fs.info(path)
    except FileNotFoundError:
        return None
    return info if info.get("type", "file") == "file" else None


def version_from_info(uri: str, info: Mapping[str, Any] | None) -> str:
    """A data version for a file: ETag on object stores, size and mtime otherwise.

    The URI's short hash is appended so that switching to another file (e.g. from
    ``a.xml`` to ``a.geojson``) always changes the version.
    """
    if info is None:
        return MISSING
    tag = hashlib.sha256(uri.encode()).hexdigest()[:6]
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    if etag:
        return f"etag-{str(etag).strip(chr(34))}-{tag}"
    mtime = info.get("mtime") or info.get("LastModified") or info.get("updated")
    if mtime is None:
        mtime = info.get("created")
    if hasattr(mtime, "timestamp"):
        mtime = mtime.timestamp()
    stamp = f"{float(mtime):.6f}" if mtime is not None else "0"
    return f"{int(info.get('size') or 0)}-{stamp}-{tag}"


def file_version(uri: str | None) -> str:
    """Data version of the file at ``uri`` (``MISSING`` when there is none)."""
    if uri is None:
        return MISSING
    return version_from_info(uri, file_info(uri))


def list_files(root: str) -> dict[str, dict[str, Any]]:
    """Every file under ``root`` (recursively): URI -> fsspec info. Empty if ``root`` is absent.

    URIs are spelled as ``root`` is (``root`` joined with the path below it), so they compare
    equal to URIs built from the same root elsewhere.
    """
    fs, path = filesystem(root)
    try:
        if not fs.isdir(path):
            return {}
        found = fs.find(path, detail=True)
    except FileNotFoundError:
        return {}
    base = path.rstrip("/")
    files = {}
    for name, info in found.items():
        if info.get("islink"):  # a listing describes the link itself; versions follow it
            try:
                info = fs.info(name)
            except (FileNotFoundError, OSError):  # a dangling link is no file
                continue
        if info.get("type") == "file" and name.startswith(base + "/"):
            files[join(root.rstrip("/"), *name[len(base) + 1 :].split("/"))] = info
    return files


def exists(uri: str) -> bool:
    """True when a file exists at ``uri``."""
    return file_info(uri) is not None


def read_bytes(uri: str) -> bytes:
    """The whole file at ``uri``."""
    fs, path = filesystem(uri)
    return fs.cat_file(path)


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri`` so that readers see the old file or the new one, never a part."""
    fs, path = filesystem(uri)
    if not isinstance(fs, LocalFileSystem):
        fs.pipe_file(path, data)
        return
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    temp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


@contextmanager
def local_copy(uri: str) -> Iterator[str]:
    """A local path holding the file at ``uri`` (the file itself when it is local).

    Remote files are downloaded into a temporary folder under their own name (so readers
    that look at the extension still work) and deleted afterwards.
    """
    if not is_url(uri):
        yield uri.removeprefix("file://")
        return
    fs, path = filesystem(uri)
    folder = tempfile.mkdtemp(prefix="wsi-")
    try:
        target = os.path.join(folder, basename(uri))
        fs.get_file(path, target)
        yield target
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def read_slide_file(uri: str, read: Callable[[str], T]) -> T:
    """``read(location)`` for the slide or overlay at ``uri``; what ``read`` returns.

    ``location`` is what ``wsi_core.slide.open_slide`` should open: remote TIFF-family files
    (Aperio SVS included) are passed as their URL, so wsi_core fetches the header and the
    tiles it reads instead of the whole file; other remote formats, which wsi_core refuses
    with ``LocalCopyRequired`` (OpenSlide reads local files only), are read from a
    temporary local copy; local files are read in place.
    """
    from wsi_core.errors import LocalCopyRequired

    if is_url(uri):
        try:
            return read(uri)
        except LocalCopyRequired:
            pass  # wsi_core looked at the header only; fetch the whole file after all
    with local_copy(uri) as path:
        return read(path)
