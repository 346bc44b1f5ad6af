"""Credentials stay out of text we show and log lines we write: redact_text, excerpt, logging."""

from __future__ import annotations

import io
import json

import pytest
import structlog
from hypothesis import example, given
from hypothesis import strategies as st

from reconciler.app.logs import SecretScrubber, configure_logging
from reconciler.redact import MASK, excerpt, is_secret_name, redact_text, redact_value

CANARY = "Canary-pw-7f3e!"

# The dialer's answer to add_list for an API user without "modify lists": it echoes the password.
ADD_LIST_ECHO = ('{"success":false,"message":"api User does not have permission to add list in '
                 'the system","data":{"user":"api","password":"1234"}}')


# --- redact_text: by shape ------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # GET query strings, as the dialer's access log would show them
    ("http://d/dialer/elision_api.php?source=t&user=api&pass=1234&function=add_user"
     "&agent_user=1000&agent_pass=9999&phone_pass=x1&agent_full_name=A+B",
     "http://d/dialer/elision_api.php?source=t&user=api&pass=***&function=add_user"
     "&agent_user=1000&agent_pass=***&phone_pass=***&agent_full_name=A+B"),
    # a POST form body
    ("user=api&pass=1234&function=update_user", "user=api&pass=***&function=update_user"),
    # free text: the value ends at white space, a quote or a pipe
    ("sent pass=abc|def to the dialer", "sent pass=***|def to the dialer"),
    ("PASS=Upper case", "PASS=*** case"),
    # JSON and Python reprs
    (ADD_LIST_ECHO,
     '{"success":false,"message":"api User does not have permission to add list in the '
     'system","data":{"user":"api","password":"***"}}'),
    ('{"user": "api", "pass": "1234"}', '{"user": "api", "pass": "***"}'),
    ('{"password":1234,"x":1}', '{"password":"***","x":1}'),
    ('{"pass":"with \\"quote\\" inside"}', '{"pass":"***"}'),
    ("{'agent_pass': '9999', 'agent_user': '1000'}",
     "{'agent_pass': \"***\", 'agent_user': '1000'}"),
    # bearer tokens
    ("Authorization: Bearer eyJhbGciOi.abc.def", "Authorization: Bearer ***"),
    ("authorization: bearer abc123", "authorization: bearer ***"),
    # user:password@ in URLs
    ("postgresql://reader:s3cret@crm-db/crm", "postgresql://reader:***@crm-db/crm"),
    ("could not connect to postgresql+psycopg://rec:p@ss:w0rd@state-db:5432/state",
     "could not connect to postgresql+psycopg://rec:***@state-db:5432/state"),
    # nothing secret: untouched
    ("SUCCESS: update_user USER HAS BEEN UPDATED - api|1000",
     "SUCCESS: update_user USER HAS BEEN UPDATED - api|1000"),
    ("http://dialer:8080/dialer/elision_api.php", "http://dialer:8080/dialer/elision_api.php"),
])
def test_redact_text_masks_credentials_by_shape(text: str, expected: str) -> None:
    assert redact_text(text) == expected


def test_the_add_list_permission_echo_loses_its_password() -> None:
    redacted = json.loads(redact_text(ADD_LIST_ECHO))
    assert redacted["data"] == {"user": "api", "password": MASK}
    assert redacted["success"] is False


# --- redact_text: by value ------------------------------------------------------------------


def test_known_secret_values_are_masked_where_no_shape_gives_them_away() -> None:
    # VICIdial's login failure echoes user and password between pipes.
    line = "ERROR: Login incorrect, please try again: |api|1234|BAD|"
    assert redact_text(line) == line                  # no shape to recognise...
    assert redact_text(line, ["1234"]) == "ERROR: Login incorrect, please try again: |api|***|BAD|"


def test_longer_secrets_are_masked_whole_and_empty_ones_ignored() -> None:
    assert redact_text("x-abcdef-x abc", ["abc", "abcdef", ""]) == "x-***-x ***"


@pytest.mark.parametrize(("text", "secret"), [
    ("aa***", "a***"),          # masking once would leave "a***"
    ("*ab*ab*", "*ab*"),
    ("*****", "****"),
])
def test_a_mask_never_completes_a_new_copy_of_the_secret(text: str, secret: str) -> None:
    assert secret not in redact_text(text, [secret])


# Text around the secret: anything, or what the dialer and its callers put next to a password.
_CONTEXT = st.one_of(
    st.text(max_size=30),
    st.sampled_from(["pass=", "&agent_pass=", '"password":"', "Bearer ", "postgresql://u:",
                     "|api|", MASK, "*", '"', "'", "@", "\n"]),
)
_SECRET = st.one_of(
    st.text(
        alphabet=st.characters(categories=("L", "M", "N", "P", "S"),
                               exclude_characters="\x85\xa0\u2028\u2029"),
        min_size=4, max_size=24,
    ).filter(lambda s: s.isprintable() and not any(ch.isspace() for ch in s)),
    # Secrets made partly of the mask's own character are where masking can go wrong.
    st.text(alphabet="*a", min_size=4, max_size=8),
)


@given(before=_CONTEXT, secret=_SECRET, after=_CONTEXT, repeat=st.integers(1, 3))
@example(before="a", secret="a***", after="", repeat=1)
@example(before="pass=", secret="1234", after="&x=1", repeat=1)
def test_property_a_known_secret_never_survives(
    before: str, secret: str, after: str, repeat: int
) -> None:
    text = before + (secret + after) * repeat
    assert secret not in redact_text(text, [secret])


# --- excerpt --------------------------------------------------------------------------------


def test_excerpt_is_one_line_and_capped() -> None:
    body = "<html>\n<body>\n\t<h1>Service   Unavailable</h1>\n" + "x" * 500 + "\n</body>"
    short = excerpt(body, limit=80)
    assert "\n" not in short and "\t" not in short
    assert short.startswith("<html> <body> <h1>Service Unavailable</h1> xxx")
    assert len(short) == 80 and short.endswith("…")
    assert excerpt("ERROR: add_user USER ALREADY EXISTS - api|1000\n") == (
        "ERROR: add_user USER ALREADY EXISTS - api|1000")


def test_excerpt_redacts_before_it_truncates() -> None:
    # Cut first, the limit would fall inside the secret and leave "secretva…" for no net to catch.
    text = "x" * 190 + " secretvalue123 tail"
    cut = excerpt(text, ["secretvalue123"], limit=200)
    assert "secret" not in cut
    assert cut == "x" * 190 + " *** tail"
    by_shape = excerpt("y" * 185 + " pass=1234567890abcdef", limit=200)
    assert "123" not in by_shape and by_shape.endswith("pass=***")


# --- names and values -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["pass", "password", "agent_pass", "phone_pass", "PASSWD",
                                  "api_token", "Authorization", "client_secret"])
def test_secret_looking_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ["agent_user", "user", "list_id", "event", "message"])
def test_ordinary_names(name: str) -> None:
    assert not is_secret_name(name)


def test_redact_value_walks_containers() -> None:
    value = {"user": "api", "pass": "1234", "rows": [{"phone_pass": "77"}, ("x", CANARY)],
             "note": f"tried {CANARY}", "empty_password": ""}
    assert redact_value("data", value, [CANARY]) == {
        "user": "api", "pass": MASK, "rows": [{"phone_pass": MASK}, ("x", MASK)],
        "note": "tried ***", "empty_password": ""}


# --- logging --------------------------------------------------------------------------------


def _log_lines(*, json_lines: bool, level: str = "INFO", secrets: tuple[str, ...] = ()
               ) -> tuple[io.StringIO, structlog.typing.FilteringBoundLogger]:
    stream = io.StringIO()
    configure_logging(secrets=secrets, json=json_lines, level=level, stream=stream)
    return stream, structlog.get_logger("test")


def test_json_logging_writes_one_json_object_per_line() -> None:
    stream, log = _log_lines(json_lines=True)
    log.info("step_applied", op="add_user", key="1000", outcome="created")
    log.debug("not_shown_at_info")
    log.warning("step_failed", op="add_list", key="1101")
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "step_applied" and first["level"] == "info"
    assert (first["op"], first["key"], first["outcome"]) == ("add_user", "1000", "created")
    assert first["timestamp"].endswith("Z")        # ISO 8601, UTC
    assert second["event"] == "step_failed" and second["level"] == "warning"


def test_console_logging_is_not_json_and_shows_the_fields() -> None:
    stream, log = _log_lines(json_lines=False)
    log.info("step_applied", op="add_user", key="1000")
    (line,) = stream.getvalue().splitlines()
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)
    assert "[info" in line and "step_applied" in line
    assert "op=add_user" in line and "key=1000" in line
    assert "\x1b[" not in line                       # no colours when the stream is no TTY


def test_auto_format_is_json_when_the_stream_is_not_a_tty() -> None:
    stream = io.StringIO()
    configure_logging(stream=stream)
    structlog.get_logger().info("hello", n=1)
    assert json.loads(stream.getvalue())["n"] == 1


def test_log_level_filters() -> None:
    stream, log = _log_lines(json_lines=True, level="DEBUG")
    log.debug("shown_at_debug")
    assert json.loads(stream.getvalue())["event"] == "shown_at_debug"
    stream, log = _log_lines(json_lines=True, level="ERROR")
    log.warning("hidden")
    assert stream.getvalue() == ""


def _log_every_kind_of_secret(log: structlog.typing.FilteringBoundLogger) -> None:
    log.info("secret_fields", agent_user="1000", agent_pass=CANARY, phone_pass=CANARY,
             password=CANARY, **{"pass": CANARY})
    log.info("secret_inside_values", body=f"SUCCESS: add_user USER HAS BEEN ADDED - api|1000|"
             f"{CANARY}|1|A|AGENTS", url=f"http://d/x?user=api&pass={CANARY}&function=add_user",
             answer=ADD_LIST_ECHO.replace("1234", CANARY))
    log.info("secret_nested", request={"params": {"user": "api", "pass": CANARY},
                                       "history": [{"agent_pass": CANARY}, f"echo {CANARY}"]})
    log.info(f"event text with {CANARY}")
    log.warning("step_failed", error=RuntimeError(f"login failed |api|{CANARY}|BAD|"))
    try:
        raise ValueError(f"dialer said |api|{CANARY}|BAD|")
    except ValueError:
        log.exception("run_failed")


@pytest.mark.parametrize("json_lines", [True, False], ids=["json", "console"])
def test_no_secret_reaches_a_rendered_line(json_lines: bool) -> None:
    stream, log = _log_lines(json_lines=json_lines, secrets=(CANARY,))
    _log_every_kind_of_secret(log)
    out = stream.getvalue()
    assert CANARY not in out
    # And the events are there, with what is not secret intact.
    for event in ("secret_fields", "secret_inside_values", "secret_nested", "step_failed",
                  "run_failed", "event text with ***"):
        assert event in out
    assert "ValueError: dialer said |api|***|BAD|" in out    # the traceback, redacted
    assert "login failed |api|***|BAD|" in out


def test_secret_fields_are_masked_in_json_lines() -> None:
    stream, log = _log_lines(json_lines=True, secrets=(CANARY,))
    _log_every_kind_of_secret(log)
    events = {e["event"]: e for e in map(json.loads, stream.getvalue().splitlines())}
    fields = events["secret_fields"]
    assert fields["agent_user"] == "1000"
    for name in ("agent_pass", "phone_pass", "password", "pass"):
        assert fields[name] == MASK
    values = events["secret_inside_values"]
    assert values["body"] == "SUCCESS: add_user USER HAS BEEN ADDED - api|1000|***|1|A|AGENTS"
    assert values["url"] == "http://d/x?user=api&pass=***&function=add_user"
    assert json.loads(values["answer"])["data"] == {"user": "api", "password": MASK}
    assert events["secret_nested"]["request"] == {
        "params": {"user": "api", "pass": MASK},
        "history": [{"agent_pass": MASK}, "echo ***"]}
    assert events["step_failed"]["error"] == "login failed |api|***|BAD|"


def test_shapes_are_masked_even_when_the_secret_is_not_known() -> None:
    stream, log = _log_lines(json_lines=True)
    log.info("dialer_call", url="http://d/x?user=api&pass=unknown1&function=active_lists",
             dsn="postgresql://rec:unknown2@db/state", password="unknown3")
    out = stream.getvalue()
    for value in ("unknown1", "unknown2", "unknown3"):
        assert value not in out


def test_the_scrubber_as_a_processor() -> None:
    scrub = SecretScrubber([CANARY, ""])
    event = scrub(None, "info", {"event": "x", "phone_pass": "1", "note": f"a {CANARY} b",
                                 "count": 3, "none_pass": None})
    assert event == {"event": "x", "phone_pass": MASK, "note": "a *** b", "count": 3,
                     "none_pass": None}
