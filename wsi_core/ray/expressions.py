"""Ray Data expression UDFs for the per-tile kernels.

:func:`~wsi_core.tiling.tile_overlay_overlap`, :func:`~wsi_core.tiling.tile_overlay` and
:func:`~wsi_core.tiling.read_slide_tiles` called with column expressions
(``ray.data.expressions.col("tile_x")``) come here and return a UDF expression for
``Dataset.with_column(name, expr)``. Arguments given as plain values are bound into the UDF
and hold for every row.

Batches: Ray Data evaluates the expression once per block, and the whole block goes to the
plain-value kernel in one call. The kernels group their tiles by file, so every overlay or
slide file is opened once per block and per distinct file, however many rows name it. A
block is what the step before produced (``flat_map`` output is gathered into blocks of up to
``DataContext.target_max_block_size``), so the tiles of one slide usually share one block and
its overlay level is read once for all of them.

Column representations (Arrow blocks; a pandas block gets the same values as Python objects):

* ``tile_overlay_overlap`` (:data:`FRACTIONS`): a struct with one float64 field per overlay
  value met in the block, keys as strings in value order (``"0"``, ``"255"``, ``"r,g,b"``);
  a tile lacking a value holds ``0.0`` for it, and a tile with no counted pixel is null. So
  ``row["tissue_overlap"]`` is a dict with every key of its block, or None. Blocks that met
  different values have different fields: Ray fills a field missing from a block with null
  when it concatenates blocks (``to_pandas``, ``repartition``), so read a value with
  ``row[column].get(key) or 0.0`` where blocks may have been merged.
* ``tile_overlay`` (:data:`PATCHES`): a struct ``{"data": tensor, "mask": tensor}``:
  ``row["tissue_overlay"]["data"]`` is the window's samples, ``["mask"]`` the bool mask,
  True where a pixel is not counted (see :class:`~wsi_core.tiling.OverlayPatch`).
* ``read_slide_tiles`` (:data:`TENSORS`): a tensor column, ``uint8 (height, width, 3)`` per row.

Tensors are Ray's tensor extension arrays: fixed-shape where every row of the block has the
same shape, variable-shaped otherwise.

The expression is also a batch function (:class:`KernelExpr`), so
``Dataset.add_column(name, expr)``, as the seed documents write it, works too: then each
``map_batches`` batch is one call, and each file is opened once per batch.

Errors: a file's problem inside a block is the kernel's :class:`~wsi_core.errors.WSIError`
naming the file; Ray Data raises it on the driver wrapped in its ``UserCodeException`` (the
file's error is the cause, and its message is in the text), or as itself with
``DataContext.raise_original_map_exception = True``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data.datatype import DataType
from ray.data.expressions import ColumnExpr, Expr, LiteralExpr, UDFExpr
from ray.data.extensions import ArrowTensorArray, ArrowVariableShapedTensorArray

#: Output kinds of :func:`column_expression`: what the kernel returns for a block.
FRACTIONS = "fractions"  # an OverlapTable
PATCHES = "patches"  # a list of OverlayPatch
TENSORS = "tensors"  # a list of ndarray


def column_expression(
    name: str,
    kernel: Callable[..., Any],
    output: str,
    per_tile: Mapping[str, Any],
    constants: Mapping[str, Any],
) -> Any:
    """A Ray Data UDF expression that computes ``kernel`` over each block.

    Typed ``Any``: the kernels' overloads say what their callers get (a ``UDFExpr``).

    Args:
        name: The public function's name, shown in Ray's plans and errors.
        kernel: The plain-value kernel; it is passed by reference (this module imports no
            kernel, so the kernels can import it lazily without an import cycle).
        output: What the kernel returns: :data:`FRACTIONS`, :data:`PATCHES` or
            :data:`TENSORS`.
        per_tile: The per-tile arguments by keyword: column expressions become the UDF's
            arguments, other values are bound as constants for every row.
        constants: Further keyword arguments of the kernel (ROI, overrides, options).

    Returns:
        A :class:`KernelExpr`: a ``ray.data.expressions.UDFExpr`` for ``with_column``, and a
        batch function for ``add_column``.
    """
    if output not in _CONVERTERS:
        raise ValueError(f"unknown output kind {output!r}")
    columns = {key: value for key, value in per_tile.items() if isinstance(value, Expr)}
    fixed = {key: value for key, value in per_tile.items() if not isinstance(value, Expr)}
    # The column's Arrow type depends on the data (the overlay values met, the patch shape),
    # so a Python return type is declared: Ray then takes the schema from the blocks.
    return KernelExpr(
        data_type=DataType(object),
        fn=BlockKernel(name, kernel, output, {**constants, **fixed}),
        args=[],
        kwargs=columns,
    )


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class KernelExpr(UDFExpr):
    """A per-tile kernel as a Ray Data UDF expression, usable two ways.

    * ``Dataset.with_column(name, expr)``: Ray evaluates it per block like any UDF
      expression (column expressions of any kind: ``col("x") + 128`` works too).
    * ``Dataset.add_column(name, expr)``: it is also a batch function, ``expr(batch)``, as
      ``add_column`` wants; a pandas, pyarrow or numpy batch gives a column of the same
      kind. Its arguments must then be plain columns (``col("x")``) or literals, since only
      ``with_column`` evaluates computed expressions.
    """

    def __call__(self, batch: Any) -> Any:
        columns = {key: _batch_column(batch, key, value) for key, value in self.kwargs.items()}
        return self.fn(**columns)


def _batch_column(batch: Any, key: str, expression: Expr) -> Any:
    """The values of ``expression`` in a pandas, pyarrow or numpy batch (a plain column or a
    literal only)."""
    if isinstance(expression, ColumnExpr):
        return batch[expression.name]
    if isinstance(expression, LiteralExpr):
        return expression.value
    raise TypeError(
        f"argument {key!r} is a computed expression ({expression!r}); Dataset.add_column "
        "passes only plain columns and literals: use Dataset.with_column for this one"
    )


class BlockKernel:
    """The callable Ray Data runs per block: column arrays in, one output column out.

    Holds the kernel (by reference), the bound constants and the output kind; Ray pickles it
    into every task that runs the projection. The output is of the input's kind: a pyarrow
    array for Arrow columns, a pandas Series of Python objects for pandas columns, a numpy
    object array for numpy columns.
    """

    def __init__(
        self, name: str, kernel: Callable[..., Any], output: str, constants: Mapping[str, Any]
    ) -> None:
        self.__name__ = name
        self._kernel = kernel
        self._output = output
        self._constants = dict(constants)

    def __call__(self, **columns: Any) -> Any:
        series = [type(column) for column in columns.values() if _is_pandas(column)]
        arrow = any(isinstance(column, (pa.Array, pa.ChunkedArray)) for column in columns.values())
        values = {key: _values(self.__name__, key, column) for key, column in columns.items()}
        result = self._kernel(**self._constants, **values)
        to_arrow, to_python = _CONVERTERS[self._output]
        if series:  # a pandas block takes a Series back, of the same class as its columns
            return series[0](to_python(result), dtype=object)
        if arrow:
            return to_arrow(result)
        objects = to_python(result)
        column = np.empty(len(objects), dtype=object)
        for i, value in enumerate(objects):  # one by one: numpy would unpack the arrays
            column[i] = value
        return column

    def __repr__(self) -> str:
        return f"<{self.__name__} block kernel>"


def _is_pandas(column: Any) -> bool:
    """Whether a block column is a pandas Series (a pandas block), checked by module name so
    that pandas is imported only where a pandas block exists."""
    return type(column).__module__.split(".", 1)[0] == "pandas"


def _values(function: str, key: str, column: Any) -> Any:
    """A block column as numpy values for the kernel; nulls are refused by name, since a tile
    without a path or an origin has nothing a kernel could compute."""
    if isinstance(column, (pa.Array, pa.ChunkedArray)):
        nulls = column.null_count
        values = None if nulls else column.to_numpy(zero_copy_only=False)
    elif _is_pandas(column):
        nulls = int(column.isna().sum())
        values = None if nulls else column.to_numpy()
    else:  # a scalar or an ndarray some other expression gave
        return column
    if values is None:
        raise ValueError(f"{function}: column {key!r} has {nulls} null values in this block")
    return values


def _fractions_to_arrow(table: Any) -> pa.Array:
    """An ``OverlapTable`` as a struct array: one float64 field per key, null rows for tiles
    with no counted pixel."""
    missing = pa.array(~np.asarray(table.counted, dtype=bool))
    if not table.keys:  # no tile of the block met the overlay: every row is null
        return pa.array([None] * len(table.counted), type=pa.struct([]))
    fields = np.ascontiguousarray(np.asarray(table.fractions, dtype=np.float64).T)
    return pa.StructArray.from_arrays(
        [pa.array(field) for field in fields], names=list(table.keys), mask=missing
    )


def _fractions_to_python(table: Any) -> list[dict[str, float] | None]:
    return list(table.rows())


def _patches_to_arrow(patches: Sequence[Any]) -> pa.Array:
    """``OverlayPatch`` per row as a struct of two tensors, ``data`` and ``mask``."""
    if not patches:
        return pa.nulls(0)
    return pa.StructArray.from_arrays(
        [_tensors([p.data for p in patches]), _tensors([p.mask for p in patches])],
        names=["data", "mask"],
    )


def _patches_to_python(patches: Sequence[Any]) -> list[dict[str, np.ndarray]]:
    return [{"data": patch.data, "mask": patch.mask} for patch in patches]


def _tensors(arrays: Sequence[np.ndarray]) -> pa.Array:
    """Ray tensor extension array of ``arrays``: fixed-shape when all shapes agree."""
    if not arrays:
        return pa.nulls(0)
    # Overlays of different files in one block may differ in sample type (uint8, uint16):
    # one column holds one type, so all widen to the common one (values stay exact).
    dtype = np.result_type(*{array.dtype for array in arrays})
    arrays = [np.asarray(array, dtype=dtype) for array in arrays]
    first = arrays[0].shape
    if all(array.shape == first for array in arrays):
        return ArrowTensorArray.from_numpy(np.stack(arrays))
    return ArrowVariableShapedTensorArray.from_numpy(arrays)


def _tensors_to_python(arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
    return list(arrays)


#: output kind -> (to Arrow for Arrow blocks, to Python objects for pandas blocks)
_CONVERTERS: dict[str, tuple[Callable[[Any], Any], Callable[[Any], list[Any]]]] = {
    FRACTIONS: (_fractions_to_arrow, _fractions_to_python),
    PATCHES: (_patches_to_arrow, _patches_to_python),
    TENSORS: (_tensors, _tensors_to_python),
}
