"""The line protocol's delivery lines (``MSG``/``MSGB``); no Twisted."""
from __future__ import annotations


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
