"""The widget bridge in a real headless Chromium: CRM page in an iframe of another origin.

Each message must arrive with the dialer document's exact shape; a foreign origin or frame is
ignored and reported; with a wrong widget origin the browser delivers nothing; bad input throws
a clear error and posts nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext

    from tests.widget.conftest import Sites, WidgetPage

pytestmark = pytest.mark.browser

LOGIN = {
    "action": "login",
    "username": "agent7",
    "password": "s3cret pw",
    "extension": "1007",
    "phone_pass": "ph0ne-pass",
}


def fill_login(widget: WidgetPage, *, username: str = "agent7") -> None:
    crm = widget.crm
    crm.fill("#username", username)
    crm.fill("#password", "s3cret pw")
    crm.fill("#extension", "1007")
    crm.fill("#phone-pass", "ph0ne-pass")
    crm.click("#login button[type=submit]")


def messages(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [event["message"] for event in events if event["type"] == "message"]


# --- the document's messages, exactly ----------------------------------------------------------


def test_login_arrives_with_the_documents_exact_shape(widget_page: WidgetPage) -> None:
    fill_login(widget_page)
    events = widget_page.wait_for_events(1)

    assert events == [{"type": "message", "origin": widget_page.sites.crm, "message": LOGIN}]
    assert list(events[0]["message"]) == list(LOGIN)
    # What the browser delivered, before the receiver looked at it, is the same object.
    assert widget_page.received() == [{"origin": widget_page.sites.crm, "data": LOGIN}]
    assert widget_page.page.text_content("#agent") == "agent7 on extension 1007"


def test_logout_arrives_with_the_documents_exact_shape(widget_page: WidgetPage) -> None:
    widget_page.crm.click("#logout")
    events = widget_page.wait_for_events(1)

    assert events == [
        {"type": "message", "origin": widget_page.sites.crm, "message": {"action": "logout"}}
    ]
    assert widget_page.received() == [
        {"origin": widget_page.sites.crm, "data": {"action": "logout"}}
    ]


def test_click_to_call_arrives_with_the_documents_exact_shape(widget_page: WidgetPage) -> None:
    calls = widget_page.crm.locator("button.call")
    calls.nth(0).click()  # +1 (555) 010-0123
    calls.nth(1).click()  # +44 20 7946 0958
    events = widget_page.wait_for_events(2)

    expected = [
        {"action": "click_to_call", "phone_code": "1", "phone_number": "5550100123"},
        {"action": "click_to_call", "phone_code": "44", "phone_number": "2079460958"},
    ]
    assert messages(events) == expected
    assert [list(message) for message in messages(events)] == [
        ["action", "phone_code", "phone_number"]
    ] * 2
    assert [entry["data"] for entry in widget_page.received()] == expected
    assert widget_page.page.text_content("#call") == "+44 2079460958"


# --- validation on the CRM side ----------------------------------------------------------------


def test_bad_input_throws_a_clear_error_and_posts_nothing(widget_page: WidgetPage) -> None:
    crm = widget_page.crm
    crm.locator("button.call").nth(2).click()  # "555-01O0": a letter O
    assert crm.text_content("#error") == (
        "phoneNumber must contain digits only (spaces, dots, dashes and brackets are allowed)"
        " (field: phoneNumber)"
    )
    fill_login(widget_page, username="")
    assert crm.text_content("#error") == "username is required (field: username)"

    thrown = crm.evaluate(
        """async () => {
             const { createDialerBridge, DialerBridgeError } = await import('./crm-bridge.js');
             const { WIDGET_ORIGIN } = await import('./config.js');
             const dialer = createDialerBridge({ widgetOrigin: WIDGET_ORIGIN });
             const attempts = [
               () => dialer.clickToCall({ phoneCode: '1', phoneNumber: '555-abc' }),
               () => dialer.clickToCall({ phoneCode: 'x1', phoneNumber: '5550100' }),
               () => dialer.clickToCall({ phoneNumber: '5550100' }),
               () => dialer.clickToCall({ phoneCode: '1', phoneNumber: '1234567890123456789' }),
               () => dialer.login({ password: 'pw', extension: '1007', phonePass: 'pp' }),
               () => dialer.login({ username: 'a', password: 'pw', extension: '1007',
                                    phone_pass: 'pp' }),
               () => dialer.login({ username: 'a', password: 'pw', extension: 1007,
                                    phonePass: 'pp' }),
             ];
             return attempts.map((attempt) => {
               try { attempt(); return null; }
               catch (err) {
                 return { ok: err instanceof DialerBridgeError, name: err.name,
                          field: err.field, message: err.message };
               }
             });
           }"""
    )
    assert all(error is not None and error["ok"] for error in thrown)
    assert all(error["name"] == "DialerBridgeError" for error in thrown)
    assert [(error["field"], error["message"]) for error in thrown] == [
        (
            "phoneNumber",
            "phoneNumber must contain digits only (spaces, dots, dashes and brackets are allowed)",
        ),
        (
            "phoneCode",
            "phoneCode must contain digits only (spaces, dots, dashes and brackets are allowed)",
        ),
        ("phoneCode", "phoneCode is required"),
        ("phoneNumber", "phoneNumber must have at most 18 digits"),
        ("username", "username is required"),
        (
            "phone_pass",
            'login() got an unknown field "phone_pass"; '
            "it takes {username, password, extension, phonePass}",
        ),
        ("extension", "extension must be a string, not number"),
    ]

    widget_page.sentinel()
    assert [entry["data"] for entry in widget_page.received()] == [{"action": "logout"}]


def test_a_wildcard_or_sloppy_origin_is_refused_on_both_sides(widget_page: WidgetPage) -> None:
    refused = widget_page.crm.evaluate(
        """async () => {
             const { createDialerBridge } = await import('./crm-bridge.js');
             return ['*', '/', '', 'https://dialer.example.com/', 'dialer.example.com',
                     'file:///tmp/widget.html'].map((widgetOrigin) => {
               try { createDialerBridge({ widgetOrigin }); return null; }
               catch (err) { return [err.name, err.field]; }
             });
           }"""
    )
    assert refused == [["DialerBridgeError", "widgetOrigin"]] * 6

    refused = widget_page.page.evaluate(
        """async () => {
             const { listenToCrm } = await import('./widget-receiver.js');
             const handlers = { logout() {} };
             return [['*'], [], ['https://crm.example.com/'], undefined].map((allowedOrigins) => {
               try { listenToCrm({ allowedOrigins, handlers })(); return null; }
               catch (err) { return err.name; }
             });
           }"""
    )
    assert refused == ["TypeError"] * 4


# --- nothing goes to another origin ------------------------------------------------------------


def test_a_wrong_widget_origin_delivers_nothing(widget_page: WidgetPage) -> None:
    sites = widget_page.sites
    posted = widget_page.crm.evaluate(
        """async ([widget, foreign, crm]) => {
             const { createDialerBridge } = await import('./crm-bridge.js');
             // The bridge hands the browser exactly the configured origin, nothing else.
             const seen = [];
             const spy = { postMessage: (message, targetOrigin) => seen.push(targetOrigin) };
             const bridge = createDialerBridge({ widgetOrigin: widget, target: spy });
             bridge.login({ username: 'a', password: 'b', extension: 'c', phonePass: 'd' });
             bridge.logout();
             bridge.clickToCall({ phoneCode: '1', phoneNumber: '5550100' });
             // Misconfigured bridges: the parent is the widget origin, not these.
             for (const widgetOrigin of [foreign, crm]) {
               createDialerBridge({ widgetOrigin }).login(
                 { username: 'agent7', password: 's3cret pw', extension: '1007',
                   phonePass: 'ph0ne-pass' });
             }
             return seen;
           }""",
        [sites.widget, sites.foreign, sites.crm],
    )
    assert posted == [sites.widget] * 3

    widget_page.sentinel()
    assert widget_page.received() == [{"origin": sites.crm, "data": {"action": "logout"}}]
    assert [event["type"] for event in widget_page.events()] == ["message"]

    # Chromium says why in the console; console events may trail the page by a moment.
    def dropped() -> list[str]:
        return [text for text in widget_page.console if "does not match the recipient" in text]

    for _ in range(40):
        if len(dropped()) >= 2:
            break
        widget_page.page.wait_for_timeout(50)
    assert len(dropped()) == 2, widget_page.console


def test_a_foreign_page_framing_the_crm_gets_no_credentials(
    context: BrowserContext, sites: Sites
) -> None:
    """Someone else's page frames the CRM page and the agent logs in: it receives nothing."""
    page = context.new_page()
    page.goto(f"{sites.foreign}/framer.html")
    page.frame_locator("#crm").locator("#embedded").filter(has_text="Inside").wait_for()
    crm = page.frame(url=f"{sites.crm}/crm-page.html")
    assert crm is not None
    crm.fill("#username", "agent7")
    crm.fill("#password", "s3cret pw")
    crm.fill("#extension", "1007")
    crm.fill("#phone-pass", "ph0ne-pass")
    crm.click("#login button[type=submit]")
    crm.locator("button.call").nth(0).click()
    crm.click("#logout")
    assert crm.text_content("#error") == ""  # the CRM page saw no error: it sent them
    # A message the framer can receive, posted after the others, proves delivery order.
    crm.evaluate("() => parent.postMessage({ ping: 1 }, '*')")
    page.wait_for_function("window.__received.length >= 1")
    assert page.evaluate("window.__received") == [{"origin": sites.crm, "data": {"ping": 1}}]


# --- the widget side rejects what it must not act on -------------------------------------------


def test_a_foreign_origin_is_ignored_and_reported(widget_page: WidgetPage) -> None:
    sites = widget_page.sites
    foreign = widget_page.add_frame(f"{sites.foreign}/blank.html")
    foreign.evaluate(
        "w => parent.postMessage(w.message, w.origin)",
        {
            "message": LOGIN,
            "origin": sites.widget,
        },
    )
    widget_page.sentinel()

    # The browser delivered it (the receiver, not luck, is what ignored it) ...
    assert [entry["origin"] for entry in widget_page.received()] == [sites.foreign, sites.crm]
    # ... and the receiver reported it without calling the login handler.
    events = widget_page.events()
    assert events[0] == {
        "type": "rejected",
        "reason": "origin",
        "detail": f'origin "{sites.foreign}" is not an allowed CRM origin',
        "origin": sites.foreign,
        "action": "login",
    }
    assert messages(events) == [{"action": "logout"}]
    assert widget_page.page.text_content("#agent") == "logged out"


def test_another_frame_of_the_crm_origin_is_not_the_crm(widget_page: WidgetPage) -> None:
    sites = widget_page.sites
    other = widget_page.add_frame(f"{sites.crm}/blank.html")
    other.evaluate(
        "origin => parent.postMessage("
        "{ action: 'click_to_call', phone_code: '1', phone_number: '5550100' }, origin)",
        sites.widget,
    )
    widget_page.sentinel()

    events = widget_page.events()
    assert events[0] == {
        "type": "rejected",
        "reason": "source",
        "detail": "message did not come from the CRM frame",
        "origin": sites.crm,
        "action": "click_to_call",
    }
    assert messages(events) == [{"action": "logout"}]


BAD_MESSAGES: list[tuple[object, str]] = [
    ("login", "message is string, not an object"),
    (None, "message is null, not an object"),
    ([{"action": "logout"}], "message is an array, not an object"),
    ({}, "no action"),
    ({"action": "dial"}, 'unknown action "dial"'),
    ({"action": "logout", "force": True}, 'logout: unexpected field(s) "force"'),
    (
        {"action": "login", "username": "a"},
        "login: missing field(s) password, extension, phone_pass",
    ),
    (
        {**LOGIN, "phonePass": "x"},
        'login: unexpected field(s) "phonePass"',
    ),
    (
        {"action": "click_to_call", "phone_code": 1, "phone_number": "5550100"},
        "click_to_call: phone_code must be a string, not number",
    ),
    (
        {"action": "click_to_call", "phone_code": "1", "phone_number": "555-0100"},
        "click_to_call: phone_number must be 1 to 18 digits",
    ),
    ({**LOGIN, "username": "  "}, "login: username is empty"),
]


def test_malformed_messages_are_rejected_without_throwing(widget_page: WidgetPage) -> None:
    widget_page.crm.evaluate(
        "([messages, origin]) => { for (const m of messages) parent.postMessage(m, origin); }",
        [[message for message, _ in BAD_MESSAGES], widget_page.sites.widget],
    )
    widget_page.sentinel()

    events = widget_page.events()
    rejected = events[:-1]
    assert [event["detail"] for event in rejected] == [detail for _, detail in BAD_MESSAGES]
    assert {event["reason"] for event in rejected} == {"shape"}
    assert {event["origin"] for event in rejected} == {widget_page.sites.crm}
    assert messages(events) == [{"action": "logout"}]
    assert all("s3cret" not in event["detail"] for event in rejected)


def test_stop_ends_listening(widget_page: WidgetPage) -> None:
    page = widget_page.page
    page.evaluate(
        """async (crm) => {
             const { listenToCrm } = await import('./widget-receiver.js');
             window.__extra = [];
             const stop = listenToCrm({
               allowedOrigins: [crm],
               handlers: { logout: (message) => window.__extra.push(message) },
             });
             stop();
             stop();
           }""",
        widget_page.sites.crm,
    )
    widget_page.sentinel()
    assert page.evaluate("window.__extra") == []


def test_an_action_without_a_handler_is_reported(widget_page: WidgetPage) -> None:
    page = widget_page.page
    page.evaluate(
        """async (crm) => {
             const { listenToCrm } = await import('./widget-receiver.js');
             window.__logoutOnly = [];
             listenToCrm({
               allowedOrigins: [crm],
               handlers: { logout: (message) => window.__logoutOnly.push(message) },
               onRejected: (rejection) => window.__logoutOnly.push(rejection),
             });
           }""",
        widget_page.sites.crm,
    )
    fill_login(widget_page)
    widget_page.sentinel()
    assert page.evaluate("window.__logoutOnly") == [
        {
            "reason": "unhandled",
            "detail": 'no handler for "login"',
            "origin": widget_page.sites.crm,
            "action": "login",
        },
        {"action": "logout"},
    ]
