"""The line protocol's delivery lines (``MSG``/``MSGB``); no Twisted."""
from __future__ import annotations

from typing import Any


def is_text(payload: bytes) -> bool:
    """True when the payload can travel as MSG: valid UTF-8 with no CR or LF."""
    if b"\n" in payload or b"\r" in payload:
        return False
    if payload.isascii():
        return True
    try:
        payload.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def encode_delivery(channel: str, msg_id: int, sender: str, payload: bytes) -> bytes:
    """The ``MSG`` line (or ``MSGB`` frame) of a message, CRLF included."""
    # Concatenation, not formatting: on PyPy ``%`` and f-strings cost several
    # times more, and this runs once per publish.
    head = (channel + " " + str(msg_id) + " " + sender).encode()
    if is_text(payload):
        return b"MSG " + head + b" " + payload + b"\r\n"
    size = str(len(payload)).encode()
    return b"MSGB " + head + b" " + size + b"\r\n" + payload + b"\r\n"


def encode_message(msg: Any) -> bytes:
    """``encode_delivery`` of anything with channel, msg_id, sender and payload
    (a txpubsub.core Message): one call on the publish path, not two."""
    head = (msg.channel + " " + str(msg.msg_id) + " " + msg.sender).encode()
    payload = msg.payload
    if is_text(payload):
        return b"MSG " + head + b" " + payload + b"\r\n"
    size = str(len(payload)).encode()
    return b"MSGB " + head + b" " + size + b"\r\n" + payload + b"\r\n"


def encode_bye(reason: str, text: str = "") -> bytes:
    """``BYE <reason> [text]``, the last line before the server closes."""
    line = f"BYE {reason} {text}" if text else f"BYE {reason}"
    return line.encode() + b"\r\n"
