"""Telling Ray Data column expressions from plain values, without importing Ray.

The per-tile kernels (:func:`~wsi_core.tiling.tile_overlay`,
:func:`~wsi_core.tiling.tile_overlay_overlap`, :func:`~wsi_core.tiling.read_slide_tiles`)
compute directly when given values and build a Ray Data expression UDF when given column
expressions (``ray.data.expressions.col("tile_x")``). Which one happens is decided here.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any


def has_column_expressions(arguments: Mapping[str, Any]) -> bool:
    """Whether any value of ``arguments`` is a Ray Data expression (``ray.data.expressions.Expr``).

    Ray is never imported for this: an expression can only exist once its module has been
    imported by whoever built it, so when ``ray.data.expressions`` is not loaded the answer is
    False and plain callers never pay Ray's import time.
    """
    module = sys.modules.get("ray.data.expressions")
    if module is None:
        return False
    expression = module.Expr
    return any(isinstance(value, expression) for value in arguments.values())
