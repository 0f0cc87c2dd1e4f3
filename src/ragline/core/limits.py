"""Input limits: checked after authentication and before any heavy work.

Every violation is an ``InvalidInput`` (HTTP 422) that names the limit and the
setting that changes it; request bodies over their size are ``TooLarge`` (413).
Metadata is copied into each chunk of a document and returned with every hit, so
it is bounded in bytes and depth; text must be valid Unicode (a lone surrogate
cannot be stored).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ragline.core.errors import InvalidInput

FILTER_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")  # metadata field names in filters


@dataclass(frozen=True)
class Limits:
    max_filter_keys: int = 8
    max_filter_values: int = 64
    max_filter_value_chars: int = 256
    max_metadata_bytes: int = 4096
    max_metadata_depth: int = 4

    @classmethod
    def of(cls, limits: Any) -> Limits:
        """From the limits settings group (``settings.limits``: the same names)."""
        return cls(
            limits.max_filter_keys,
            limits.max_filter_values,
            limits.max_filter_value_chars,
            limits.max_metadata_bytes,
            limits.max_metadata_depth,
        )

    def check_filters(self, filters: Mapping[str, Any] | None) -> None:
        filters = filters or {}
        if len(filters) > self.max_filter_keys:
            raise InvalidInput(f"filters: at most {self.max_filter_keys} keys (max_filter_keys); got {len(filters)}")
        for key, value in filters.items():
            if not FILTER_KEY.match(key):
                raise InvalidInput(
                    f"filters: key {key[:80]!r} must be 1-64 letters, digits and '_', not starting with a digit"
                )
            values = value if isinstance(value, list) else [value]
            if len(values) > self.max_filter_values:
                raise InvalidInput(
                    f"filters.{key}: at most {self.max_filter_values} values (max_filter_values); got {len(values)}"
                )
            if isinstance(value, list) and not value:
                raise InvalidInput(f"filters.{key}: an empty list matches nothing; give at least one value")
            for item in values:
                if isinstance(item, str):
                    check_text(item, f"filters.{key}")
                    if len(item) > self.max_filter_value_chars:
                        raise InvalidInput(
                            f"filters.{key}: values are limited to {self.max_filter_value_chars} "
                            f"characters (max_filter_value_chars); got {len(item)}"
                        )

    def check_metadata(self, metadata: Mapping[str, Any], where: str = "metadata") -> None:
        depth = _depth(metadata)
        if depth > self.max_metadata_depth:
            raise InvalidInput(
                f"{where}: nested {depth} levels deep; the limit is {self.max_metadata_depth} (max_metadata_depth)"
            )
        try:
            size = len(json.dumps(metadata, ensure_ascii=False, default=str).encode("utf-8"))
        except UnicodeEncodeError as exc:
            raise InvalidInput(f"{where}: not valid Unicode text (a lone surrogate at {exc.start})") from None
        if size > self.max_metadata_bytes:
            raise InvalidInput(
                f"{where}: {size} bytes as JSON; the limit is {self.max_metadata_bytes} "
                "(max_metadata_bytes); metadata is stored with every chunk"
            )


def check_text(text: str, where: str) -> None:
    """InvalidInput unless ``text`` encodes as UTF-8 (JSON can carry lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{where}: not valid Unicode text (a lone surrogate at character {exc.start})") from None


def _depth(value: Any, level: int = 0) -> int:
    """Nesting depth of dicts and lists, iteratively: a hostile 10,000-deep value cannot recurse."""
    deepest = level
    stack = [(value, level)]
    while stack:
        item, at = stack.pop()
        if isinstance(item, Mapping):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, at + 1)
        stack.extend((child, at + 1) for child in children)
    return deepest
