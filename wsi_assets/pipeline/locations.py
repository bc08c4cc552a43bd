"""Files in local folders and fsspec URLs (``s3://``, ``memory://``, ...), through UPath.

Credentials for remote stores come from the environment (``AWS_*``, instance roles) or the
``storage_options`` of the settings, never from code. Remote filesystems are opened without
a directory-listing cache: s3fs would keep the first listing of a folder for the life of its
process-wide instance and answer ``info`` from it, so an object uploaded or overwritten
later by another machine would look absent or unchanged to a long-lived sensor.
"""

from __future__ import annotations

import errno
import hashlib
import inspect
import os
import re
import time
import uuid
from collections.abc import Mapping
from stat import S_ISREG
from typing import Any

from fsspec import AbstractFileSystem
from upath import UPath

from wsi_core.remote import is_url

#: Data version of a file that does not exist.
MISSING = "missing"

#: fsspec ``info`` of one file.
Info = Mapping[str, Any]


def location(uri: str, storage_options: Mapping[str, Any] | None = None) -> UPath:
    """``uri`` (a local path or a URL) as a UPath with the given fsspec options."""
    options = dict(storage_options or {})
    if is_url(uri):
        options.setdefault("use_listings_cache", False)
    return UPath(uri, **options)


def is_local(path: UPath) -> bool:
    """True for a path on the local file system (plain paths and ``file://`` URLs)."""
    return path.protocol in ("", "file", "local")


def uri_of(path: UPath) -> str:
    """What a user would type for ``path``: a plain path when local, else the URL."""
    return path.path if is_local(path) else str(path)


def file_info(path: UPath) -> Info | None:
    """fsspec ``info`` of the file at ``path``, or None where there is no such file.

    Only "not found" means absent: a denied or failed request raises, so that a file the
    store will not show us is never taken for a missing one.
    """
    try:
        info = path.fs.info(path.path)
    except FileNotFoundError:
        return None
    except OSError as error:
        if error.errno == errno.ENAMETOOLONG:  # no file can have that name
            return None
        raise
    return info if info.get("type", "file") == "file" else None


def file_version(uri: str, info: Info | None) -> str:
    """A data version of the file at ``uri``: its ETag on object stores, size and
    modification time elsewhere, and a short hash of ``uri`` (so that another file, e.g.
    ``a.geojson`` instead of ``a.xml``, always has another version). ``MISSING`` for None."""
    if info is None:
        return MISSING
    tag = hashlib.sha256(uri.encode()).hexdigest()[:6]
    etag = info.get("ETag") or info.get("etag") or info.get("md5Hash")
    if etag:
        return f"etag-{str(etag).strip(chr(34))}-{tag}"
    mtime = modified(info)
    stamp = f"{mtime:.6f}" if mtime is not None else "0"
    return f"{int(info.get('size') or 0)}-{stamp}-{tag}"


def modified(info: Info) -> float | None:
    """Modification time of a listed file, seconds since the epoch (None if unknown)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("updated")
    if value is None:
        value = info.get("created")
    if value is None:
        return None
    return float(value.timestamp()) if hasattr(value, "timestamp") else float(value)


def list_files(root: UPath) -> dict[str, Info]:
    """Every file under ``root`` (recursively): URI -> fsspec info; empty if ``root`` is absent.

    One recursive listing (a paginated LIST on object stores; ``os.scandir`` locally, which
    is ten times faster than fsspec's local walk on a folder of 10,000 slides). URIs are
    ``uri_of(root)`` joined with the path below it, so they equal URIs built elsewhere.
    """
    if is_local(root):
        return _local_files(root.path, recursive=True)
    fs, base = root.fs, root.path.rstrip("/")
    try:
        found = fs.find(base, detail=True)
    except FileNotFoundError:
        return {}
    prefix = uri_of(root).rstrip("/")
    files = {}
    for name, listed in found.items():
        info = _followed(fs, name, listed)
        if info is not None and name.startswith(base + "/"):
            files[f"{prefix}/{name[len(base) + 1 :]}"] = info
    return files


def list_prefix(folder: UPath, prefix: str) -> dict[str, Info]:
    """The files directly in ``folder`` whose names start with ``prefix``: URI -> info.

    Object stores are asked for that prefix only (one LIST, however many files the folder
    holds); other file systems list the folder.
    """
    if is_local(folder):
        return _local_files(folder.path, recursive=False, prefix=prefix)
    fs, base = folder.fs, folder.path.rstrip("/")
    try:
        if _lists_by_prefix(fs):
            found = fs.find(base, maxdepth=1, detail=True, prefix=prefix)
        else:
            found = {entry["name"]: entry for entry in fs.ls(base, detail=True)}
    except FileNotFoundError:
        return {}
    files = {}
    for name, listed in found.items():
        leaf = name.rstrip("/").rsplit("/", 1)[-1]
        info = _followed(fs, name, listed) if leaf.startswith(prefix) else None
        if info is not None:
            files[f"{uri_of(folder).rstrip('/')}/{leaf}"] = info
    return files


def _local_files(folder: str, *, recursive: bool, prefix: str = "") -> dict[str, Info]:
    """Local files under (or, not ``recursive``, directly in) ``folder`` whose names start
    with ``prefix``: path -> the info fsspec would give (size and mtime of a link's target;
    dangling links and folders left out)."""
    files: dict[str, Info] = {}
    pending = [folder]
    while pending:
        try:
            entries = list(os.scandir(pending.pop()))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                if recursive:
                    pending.append(entry.path)
            elif entry.name.startswith(prefix):
                try:
                    stat = entry.stat()  # follows links: versions follow the target
                except OSError:
                    continue
                if S_ISREG(stat.st_mode):
                    files[entry.path] = {
                        "name": entry.path,
                        "size": stat.st_size,
                        "type": "file",
                        "mtime": stat.st_mtime,
                    }
    return files


def _followed(fs: AbstractFileSystem, name: str, info: Info) -> Info | None:
    """The info of a listed file, a symbolic link followed (a listing describes the link
    itself, and versions must follow its target); None for a directory or a dangling link."""
    if info.get("islink"):
        try:
            info = fs.info(name)
        except OSError:
            return None
    return info if info.get("type") == "file" else None


def _lists_by_prefix(fs: AbstractFileSystem) -> bool:
    """True for filesystems whose ``find`` asks the store for a key prefix (s3fs, gcsfs)."""
    return "prefix" in inspect.signature(fs.find).parameters


def read_bytes(path: UPath) -> bytes:
    """The whole file at ``path`` in one request: no existence check before, and a ranged
    read from byte 0 rather than a plain one, for which s3fs asks the size first."""
    return path.fs.cat_file(path.path, start=0)


#: A temporary file of ours older than this was left by a write that was killed.
STALE_TEMPORARY_SECONDS = 3600


def _temporary(target: str) -> str:
    """A new temporary name beside ``target``: hidden, unique, recognisably ours."""
    return os.path.join(
        os.path.dirname(target), f".{os.path.basename(target)}.{uuid.uuid4().hex}.tmp"
    )


def remove_stale_temporaries(path: UPath, now: float | None = None) -> list[str]:
    """Delete the temporary files that killed writes of ``path`` left beside it (ours by
    name, older than ``STALE_TEMPORARY_SECONDS``); return their paths. Object stores have
    none: a PUT is whole or absent."""
    if not is_local(path):
        return []
    folder, name = os.path.split(path.path)
    pattern = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{32}}\.tmp")
    limit = (time.time() if now is None else now) - STALE_TEMPORARY_SECONDS
    removed = []
    for entry in _entries(folder):
        if pattern.fullmatch(entry.name) and entry.stat(follow_symlinks=False).st_mtime < limit:
            os.unlink(entry.path)
            removed.append(entry.path)
    return removed


def _entries(folder: str) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(folder))
    except FileNotFoundError:
        return []


def write_atomic(path: UPath, data: bytes, *, create: bool = False) -> dict[str, Any]:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never a
    part of either; return what the store says about the written object (an ETag remotely).

    With ``create=True`` the write happens only where no file exists yet
    (``FileExistsError`` otherwise): a local hard link of a finished temporary file, a
    conditional PUT (``If-None-Match: *``) on object stores.
    """
    if not is_local(path):
        response = path.fs.pipe_file(path.path, data, mode="create" if create else "overwrite")
        return response if isinstance(response, dict) else {}
    target = path.path
    os.makedirs(os.path.dirname(target), exist_ok=True)
    temp = _temporary(target)
    try:
        descriptor = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if create:
            os.link(temp, target)  # fails with FileExistsError if another writer came first
        else:
            os.replace(temp, target)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)
    return {}
