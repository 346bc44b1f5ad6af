"""HTTP-level pieces shared by the WSGI app and the in-process transport.

A request is reduced to `Incoming` and answered with `Answer`, so both ways in (a WSGI server,
an httpx transport) run exactly the same code.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl

TEXT_TYPE = "text/html; charset=UTF-8"
JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Incoming:
    method: str
    path: str
    query: bytes
    body: bytes = b""
    content_type: str = ""


@dataclass(frozen=True)
class Answer:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes

    @property
    def reason(self) -> str:
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"


def text_answer(text: str, status: int = 200) -> Answer:
    return Answer(status, (("Content-Type", TEXT_TYPE),), text.encode("utf-8"))


def json_answer(text: str, status: int = 200) -> Answer:
    return Answer(status, (("Content-Type", JSON_TYPE),), text.encode("utf-8"))


def error_page(status: int, extra_headers: tuple[tuple[str, str], ...] = ()) -> Answer:
    """The HTML page a web server or proxy in front of the dialer shows for an HTTP error."""
    phrase = Answer(status, (), b"").reason
    page = (
        '<!DOCTYPE HTML PUBLIC "-//IETF//DTD HTML 2.0//EN">\n'
        f"<html><head>\n<title>{status} {phrase}</title>\n</head><body>\n<h1>{phrase}</h1>\n"
        "<hr>\n<address>Apache/2.4.41 (Ubuntu) Server at dialer Port 80</address>\n"
        "</body></html>\n"
    )
    headers = (("Content-Type", "text/html; charset=iso-8859-1"), *extra_headers)
    return Answer(status, headers, page.encode("utf-8"))


def php_json(value: Any) -> str:
    """Encode like PHP's json_encode: compact, ASCII only, and "/" escaped as "\\/"."""
    # "/" only ever appears inside JSON strings, so a plain replace is exact.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=True).replace("/", "\\/")


def parse_params(incoming: Incoming) -> dict[str, str]:
    """The request's fields: query string and urlencoded form body merged.

    A repeated name keeps its last value (PHP); on a clash between query and body the query
    wins, because VICIdial reads $_GET before $_POST. Other body types are ignored.
    """
    params: dict[str, str] = {}
    if incoming.method == "POST" and incoming.content_type.split(";")[0].strip().lower() == (
        "application/x-www-form-urlencoded"
    ):
        params.update(_pairs(incoming.body))
    params.update(_pairs(incoming.query))
    return params


def _pairs(raw: bytes) -> dict[str, str]:
    text = raw.decode("utf-8", errors="replace")
    return dict(parse_qsl(text, keep_blank_values=True, encoding="utf-8", errors="replace"))
