"""Errors raised by wsi_core. Every one names the file it is about."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager


class WSIError(Exception):
    """A problem with one input file (slide, annotation or overlay).

    ``path`` is the file the problem is about; the message always starts with it so that a
    failed Dagster partition or Ray task says which file to look at.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)

    def __reduce__(self) -> tuple:
        # Subclasses take other constructor arguments (MissingMPPError only the path), so the
        # default (class, args) pickle cannot rebuild them: an error raised in a Ray worker or
        # another process would arrive as a TypeError instead of the file's problem.
        return (_rebuild_error, (type(self), self.path, self.problem), self.__dict__)


def _rebuild_error(cls: type[WSIError], path: str | None, problem: str) -> WSIError:
    """Unpickle a :class:`WSIError` of any subclass without calling its own ``__init__``."""
    error = cls.__new__(cls)
    WSIError.__init__(error, path, problem)
    return error


class SlideError(WSIError):
    """A slide or overlay that cannot be opened or read."""


class MissingMPPError(SlideError):
    """A slide whose resolution (micrometres per pixel) is not recorded in the file."""

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        super().__init__(
            path,
            "no resolution (micrometres per pixel) is recorded in this slide; "
            "pass an mpp override or choose a level explicitly",
        )


class LocalCopyRequired(SlideError):
    """A slide named by a URL that only a local file can be read from (an OpenSlide format).

    ``problem`` says what the file is and that a local copy is needed; callers that can
    download the file catch this and open the copy instead.
    """

    def __init__(self, path: str | os.PathLike[str] | None, what: str) -> None:
        super().__init__(
            path,
            f"{what}; only TIFF-family slides are read through a URL, open a local copy "
            "(OpenSlide reads local files only)",
        )


class AnnotationError(WSIError):
    """An annotation file that is malformed or of the wrong format."""


@contextmanager
def reported_as(
    error_class: type[WSIError], path: str | os.PathLike[str] | None, doing: str
) -> Iterator[None]:
    """Turn whatever goes wrong inside the block into ``error_class(path, ...)``.

    The one place where wsi_core decides which failures are the file's: every backend and
    parser wraps its public entry points in :func:`slide_errors` or :func:`annotation_errors`,
    so no library's own exception (``struct.error``, ``ZeroDivisionError``, ``KeyError``,
    ``openslide.OpenSlideError``, a ``TypeError`` from an unexpected JSON value, ...) reaches a
    caller without the name of the file it is about. ``doing`` says what was being done
    ("cannot open the slide"); the problem text is ``"{doing}: {ExceptionType}: {message}"``.

    * A :class:`WSIError` passes unchanged (it already names its file).
    * ``FileNotFoundError`` (and ``IsADirectoryError``, ``NotADirectoryError``) becomes
      ``error_class(path, "no such file")``: a missing file is a permanent problem of that path.
    * Any other ``OSError`` (denied, network, timeout) passes unchanged, because callers retry
      those and a retried read may succeed; so do the errors of the storage libraries under
      fsspec (botocore's ``NoCredentialsError``, aiohttp's ``ClientError``, ...,
      :data:`STORAGE_MODULES`), which are about reaching the file, not about what it holds.
    * ``MemoryError`` becomes ``error_class`` too: the file asked for more memory than there is,
      and a bare ``MemoryError`` would not say which file did.
    * ``BaseException`` that is no ``Exception`` (``KeyboardInterrupt``, ``SystemExit``, a test's
      time limit) is never caught.
    """
    try:
        yield
    except WSIError:
        raise
    except FileNotFoundError as error:
        raise error_class(path, "no such file") from error
    except (IsADirectoryError, NotADirectoryError) as error:
        raise error_class(path, "no such file (a directory is in the way)") from error
    except OSError:
        raise
    except Exception as error:
        if _from_storage(error):
            raise
        raise error_class(path, _problem(doing, error)) from error


#: Top-level packages whose exceptions are storage failures (credentials, network, service),
#: passed on unchanged like ``OSError``: the storage stacks fsspec reaches S3, GCS, Azure and
#: HTTP through.
STORAGE_MODULES = frozenset(
    {"botocore", "aiobotocore", "boto3", "s3fs", "aiohttp", "gcsfs", "google", "adlfs", "azure"}
)


def _from_storage(error: Exception) -> bool:
    """Whether ``error`` is one of the storage libraries' own (see :data:`STORAGE_MODULES`)."""
    return any(
        klass.__module__.split(".", 1)[0] in STORAGE_MODULES for klass in type(error).__mro__
    )


def _problem(doing: str, error: Exception) -> str:
    """The problem text for a library's ``error`` met while ``doing``."""
    if isinstance(error, MemoryError):
        return f"{doing}: out of memory (the file claims more data than fits in memory)"
    if isinstance(error, RecursionError):
        return f"{doing}: nested too deeply to read"
    return f"{doing}: {type(error).__name__}: {_short(str(error))}"


def slide_errors(path: str | os.PathLike[str] | None, doing: str) -> AbstractContextManager[None]:
    """:func:`reported_as` for slides and overlays: failures become :class:`SlideError`."""
    return reported_as(SlideError, path, doing)


def annotation_errors(
    path: str | os.PathLike[str] | None, doing: str
) -> AbstractContextManager[None]:
    """:func:`reported_as` for annotation files: failures become :class:`AnnotationError`."""
    return reported_as(AnnotationError, path, doing)


def _short(text: str, limit: int = 300) -> str:
    """``text`` cut to ``limit`` characters: a library's message may quote a whole buffer."""
    return text if len(text) <= limit else text[: limit - 3] + "..."
