"""Errors of the engine-neutral layer. Each names the file or table it is about first.

Errors about an input file (``InputFileError`` and the ``wsi_core`` errors it extends) are
permanent until the file changes: engines fail the slide and do not retry. Storage errors
(``OSError``) may be transient and are retried by the engines.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from wsi_core.errors import MissingMPPError, WSIError
from wsi_core.tables.overlay_overlap import OverlayMismatchError


class InputFileError(WSIError):
    """A slide, annotation or overlay file that cannot be used (the message says why)."""


class UnknownSlideError(WSIError):
    """A slide key that the registry does not know and no listed slide has."""


class MissingTableError(WSIError):
    """An upstream table of a slide that has not been written yet."""


class ForeignFileError(WSIError):
    """An output path taken by a file this project did not write (it is never overwritten)."""


@contextmanager
def about_file(uri: str, kind: str, missing_mpp: str | None = None) -> Iterator[None]:
    """Any error while reading the ``kind`` file at ``uri`` becomes an
    :class:`InputFileError` naming ``uri``; storage errors (``OSError`` other than a missing
    file) pass unchanged so that engines can retry them. ``missing_mpp`` names the setting
    that gives a resolution to a file that records none."""
    try:
        yield
    except InputFileError:
        raise
    except (MissingMPPError, OverlayMismatchError) as error:
        setting = missing_mpp or "an mpp setting"
        problem = (
            error.problem.split(";")[0] if isinstance(error, MissingMPPError) else error.problem
        )
        raise InputFileError(uri, f"{problem}; set {setting} (micrometres per pixel)") from error
    except WSIError as error:  # its path may be a temporary copy: name the file the user has
        raise InputFileError(uri, error.problem) from error
    except FileNotFoundError as error:
        raise InputFileError(uri, f"{kind} file not found") from error
    except OSError:
        raise
    except Exception as error:  # a reader's own failure on a bad file: report it against the file
        problem = f"cannot read {kind}: {type(error).__name__}: {error}"
        raise InputFileError(uri, problem) from error
