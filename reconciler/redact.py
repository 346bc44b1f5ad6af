"""Keep credentials out of everything we print, log, raise or store.

Three nets, because the dialer echoes passwords back in some answers:
- by name: any field whose name looks like a secret (pass, password, agent_pass, phone_pass...);
- by shape: `pass=...` parameters inside URLs or form bodies, and `"password": "..."` in JSON;
- by value: the exact secret strings the caller knows it sent.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MASK = "***"

_SECRET_NAME = re.compile(r"(pass|password|passwd|secret|token|authorization)", re.IGNORECASE)

# `pass=1234`, `agent_pass=9999&`, `phone_pass=x` in URLs, form bodies and free text.
_PARAM = re.compile(r"(?P<name>\b[\w.-]*(?:pass|password|passwd|token)\w*)=(?P<value>[^&\s\"'|]*)",
                    re.IGNORECASE)
# `"password":"1234"` and `'pass': '1234'` in JSON or Python reprs.
_JSON_FIELD = re.compile(
    r"(?P<key>[\"'][\w.-]*(?:pass|password|passwd|token)\w*[\"']\s*:\s*)(?P<value>\"(?:[^\"\\]|\\.)*\"|'[^']*'|[^,}\s]+)",
    re.IGNORECASE,
)
# `postgresql://user:secret@host/db`
_URL_USERINFO = re.compile(
    r"(?P<key>[a-z][\w+.-]*://[^:/@\s]*:)(?P<value>[^\s/]+)(?=@)", re.IGNORECASE
)
# `Authorization: Bearer abc`
_BEARER = re.compile(r"(?P<key>bearer\s+)(?P<value>\S+)", re.IGNORECASE)


def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def redact_text(text: str, secrets: Iterable[str] = ()) -> str:
    """Return `text` with every recognisable credential replaced by `***`."""
    text = _PARAM.sub(lambda m: f"{m.group('name')}={MASK}", text)
    text = _JSON_FIELD.sub(lambda m: f"{m.group('key')}\"{MASK}\"", text)
    text = _BEARER.sub(lambda m: f"{m.group('key')}{MASK}", text)
    text = _URL_USERINFO.sub(lambda m: f"{m.group('key')}{MASK}", text)
    # Longest first, so a secret that contains another is masked whole.
    ordered = sorted({s for s in secrets if s}, key=len, reverse=True)
    for secret in ordered:
        text = text.replace(secret, MASK)
    # A mask can complete a new occurrence with its neighbours ("a***" in "aa***" leaves
    # "a***"): repeat for secrets longer than the mask; each pass shortens the text, so it ends.
    longer = [s for s in ordered if len(s) > len(MASK)]
    while any(secret in text for secret in longer):
        for secret in longer:
            text = text.replace(secret, MASK)
    return text


def redact_value(name: str, value: Any, secrets: Iterable[str] = ()) -> Any:
    """Redact one named value; containers are walked, other scalars pass through."""
    if is_secret_name(name) and value not in (None, ""):
        return MASK
    if isinstance(value, str):
        return redact_text(value, secrets)
    if isinstance(value, Mapping):
        return {k: redact_value(str(k), v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_value(name, v, secrets) for v in value)
    if isinstance(value, BaseException):
        return redact_text(str(value), secrets)
    return value


def excerpt(text: str, secrets: Iterable[str] = (), limit: int = 200) -> str:
    """A short, single-line, redacted piece of a dialer answer, safe for messages and logs."""
    flat = " ".join(redact_text(text, secrets).split())
    if len(flat) > limit:
        return flat[: limit - 1] + "…"
    return flat
