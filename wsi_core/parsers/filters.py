"""Label and property filters: regular expressions matched against the whole value.

A filter is a mapping of keys (a field name, or a path into nested properties) to patterns;
an entry passes when every pattern matches the whole of its value (``re.fullmatch``), so
``name="Annotation 1"`` does not select "Annotation 10".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Pattern = str | re.Pattern[str]
"""A regular expression; it must match the *whole* value (``re.fullmatch``)."""


def compile_filters(filters: Mapping[Any, Pattern | None]) -> list[tuple[Any, re.Pattern[str]]]:
    """Compile the patterns of ``filters``; a ``None`` pattern means "do not filter on this"."""
    return [(key, re.compile(pattern)) for key, pattern in filters.items() if pattern is not None]


def fullmatch(pattern: re.Pattern[str], value: Any) -> bool:
    """Whether ``pattern`` matches the whole of ``value``.

    ``None`` (missing) never matches. Numbers match their decimal text and booleans their JSON
    spelling (``true``/``false``), so ``isLocked="true"`` works; lists and objects never match.
    """
    if value is None:
        return False
    if isinstance(value, str):
        text = value
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, (int, float)):
        text = str(value)
    else:
        return False
    return pattern.fullmatch(text) is not None


def filter_entries(
    entries: Iterable[Any],
    patterns: Sequence[tuple[Any, re.Pattern[str]]],
    value_of: Callable[[Mapping[str, Any], Any], Any],
) -> list[Any]:
    """The entries where every ``(key, pattern)`` fullmatches ``value_of(fields, key)``."""
    if not patterns:
        return list(entries)
    return [
        entry
        for entry in entries
        if all(fullmatch(pattern, value_of(entry.fields, key)) for key, pattern in patterns)
    ]


def field_value(fields: Mapping[str, Any], key: Any) -> Any:
    """Plain lookup for the fixed-field formats (ASAP, Darwin, EMPAIA)."""
    return fields.get(key)
