"""Keyed digests of secret fields, so a password change is detected without storing it.

The key lives in its own file (reconciler.adapters.state.keyfile), never in the state
database: whoever reads the state database cannot test guesses against the digests.
"""

from __future__ import annotations

import hashlib
import hmac


def keyed_digest(key: bytes, field: str, value: str) -> str:
    message = f"{field}\x00{value}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()
