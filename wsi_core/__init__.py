"""Kernels for whole-slide images: slide readers, tile grids, annotation parsers, coverage and
overlay kernels. No Dagster (or other engine) import anywhere in this package.

Units, everywhere in the package:

* level coords: pixels of one pyramid level, ``x`` the column, ``y`` the row;
* level 0: pixels of the full-resolution level, where annotations live;
* downsample: level-0 pixels per level pixel;
* ``mpp``: micrometres per pixel, an ``(x, y)`` pair (or one float for both).

Entry points: :func:`wsi_core.slide.open_slide`, :mod:`wsi_core.tiling`,
:mod:`wsi_core.parsers`, :mod:`wsi_core.geometry`.
"""
