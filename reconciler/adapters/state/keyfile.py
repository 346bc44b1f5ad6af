"""The key of the password digests (reconciler.core.digests), in its own file.

Never in the state database: whoever reads the state database cannot test guesses against the
digests. Losing the key only makes the next run push every password once.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from pathlib import Path

from reconciler.errors import ConfigError

KEY_BYTES = 32


def load_or_create_key(path: Path) -> bytes:
    try:
        if path.exists():
            key = bytes.fromhex(path.read_text(encoding="ascii").strip())
            if len(key) < 16:
                raise ValueError
            return key
        key = secrets.token_bytes(KEY_BYTES)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written whole into a private temporary file (mkstemp: mode 0600 from the start), then
        # linked into place: no process ever sees the key file without its key, not even after
        # a crash, and of two processes creating it at once exactly one wins.
        fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.",
                                         suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="ascii") as handle:
                handle.write(key.hex() + "\n")
            os.link(temporary, path)
        finally:
            os.unlink(temporary)
        return key
    except FileExistsError:
        return load_or_create_key(path)  # another process created it first
    except (OSError, ValueError):
        raise ConfigError(f"state.digest_key_file {path}: not a readable key file") from None
