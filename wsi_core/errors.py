"""Errors raised by wsi_core. Every one names the file it is about."""

from __future__ import annotations

import os


class WSIError(Exception):
    """A problem with one input file (slide, annotation or overlay).

    ``path`` is the file the problem is about; the message always starts with it so that a
    failed Dagster partition or Ray task says which file to look at.
    """

    def __init__(self, path: str | os.PathLike[str] | None, problem: str) -> None:
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


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
