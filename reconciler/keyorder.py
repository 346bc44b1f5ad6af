"""One key order for every stream that is merged: text compared byte by byte.

Python compares strings by code point, which is UTF-8 byte order; asking each database for the
same order lets the planner merge a CRM stream with a state stream without sorting either.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def binary_key_order(expression: Any, dialect: str) -> Any:
    """ORDER BY the key as text compared byte by byte, whatever the column type or collation."""
    as_text = sa.cast(expression, sa.String)
    if dialect == "postgresql":
        return as_text.collate("C")
    if dialect in ("mysql", "mariadb"):
        return as_text.collate("utf8mb4_bin")
    return as_text  # SQLite compares text with memcmp already
