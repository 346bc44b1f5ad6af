"""The CRM widget bridge: two small ES modules shipped as package data.

- ``crm-bridge.js`` runs in the CRM page that the dialer's agent widget embeds; it posts the
  document's ``login``, ``logout`` and ``click_to_call`` messages to the widget's origin only.
- ``widget-receiver.js`` runs in the widget page; it accepts those messages from allowed CRM
  origins only, checks their shape and calls one handler per action.

Python does not run them: it only says where they are, copies them, or serves them
(``reconciler widget``). See ``docs/widget.md``.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["CRM_BRIDGE", "WIDGET_RECEIVER", "asset_paths", "module_path", "receiver_path"]

CRM_BRIDGE = "crm-bridge.js"
WIDGET_RECEIVER = "widget-receiver.js"

_HERE = Path(__file__).resolve().parent


def module_path() -> Path:
    """The CRM-side module, ``crm-bridge.js``."""
    return _HERE / CRM_BRIDGE


def receiver_path() -> Path:
    """The widget-side module, ``widget-receiver.js``."""
    return _HERE / WIDGET_RECEIVER


def asset_paths() -> dict[str, Path]:
    """Both modules by file name, CRM side first."""
    return {CRM_BRIDGE: module_path(), WIDGET_RECEIVER: receiver_path()}
