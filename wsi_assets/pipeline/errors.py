"""Errors of the engine-neutral layer. Each names the file or table it is about first.

Errors about an input file (``InputFileError`` and the ``wsi_core`` errors it extends) are
permanent until the file changes: engines fail the slide and do not retry. Storage errors
(``OSError``) may be transient and are retried by the engines.
"""

from __future__ import annotations

from wsi_core.errors import WSIError


class InputFileError(WSIError):
    """A slide, annotation or overlay file that cannot be used (the message says why)."""


class UnknownSlideError(WSIError):
    """A slide key that the registry does not know and no listed slide has."""


class MissingTableError(WSIError):
    """An upstream table of a slide that has not been written yet."""


class ForeignFileError(WSIError):
    """An output path taken by a file this project did not write (it is never overwritten)."""
