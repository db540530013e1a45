"""The WebSocket door's JSON form and the server's frame bytes; no Twisted.

Server frames are never masked, so one message's frame is the same bytes for
every subscriber: the JSON door writes them to the socket itself, as the line
door writes ``MSG`` lines (autobahn's ``prepareMessage`` is the same idea).
"""
from __future__ import annotations

import base64
import json
import struct
from typing import Any

OP_TEXT = 0x1
OP_CLOSE = 0x8
OP_PING = 0x9

SUBPROTOCOL = "txpubsub.json"

# Close codes (RFC 6455 section 7.4.1) for the BYE reasons.
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_frame(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked server frame."""
    size = len(payload)
    if size < 126:
        head = bytes((0x80 | opcode, size))
    elif size < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 126, size)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 127, size)
    return head + payload


def text_frame(obj: Any) -> bytes:
    """A JSON value as one text frame."""
    return encode_frame(OP_TEXT, _dumps(obj).encode())


def close_frame(code: int, reason: str) -> bytes:
    """A close frame; the reason is cut to the 123 bytes a control frame allows."""
    raw = reason.encode()[:123]
    while raw:
        try:
            raw.decode()
            break
        except UnicodeDecodeError:  # cut inside a character
            raw = raw[:-1]
    return encode_frame(OP_CLOSE, struct.pack("!H", code) + raw)


PING_FRAME = encode_frame(OP_PING, b"")


def close_code(reason: str) -> int:
    """The close code for a BYE reason word (PROTOCOL.md)."""
    if reason == "shutdown":
        return CLOSE_GOING_AWAY
    if reason == "too-large":
        return CLOSE_TOO_BIG
    return CLOSE_POLICY


def message_json(channel: str, msg_id: int, sender: str, payload: bytes) -> bytes:
    """A delivery's JSON object (UTF-8): ``data``, or ``data_b64`` for bytes."""
    try:
        data = payload.decode()
        key = "data"
    except UnicodeDecodeError:
        data = base64.b64encode(payload).decode()
        key = "data_b64"
    return _dumps({"type": "msg", "channel": channel, "id": msg_id, "sender": sender,
                   key: data}).encode()


def message_frame(channel: str, msg_id: int, sender: str, payload: bytes) -> bytes:
    """A delivery as the text frame every JSON subscriber gets."""
    return encode_frame(OP_TEXT, message_json(channel, msg_id, sender, payload))


def dumps(obj: Any) -> bytes:
    """Compact JSON in UTF-8, as every frame of this door is written."""
    return _dumps(obj).encode()


def frame_limit(max_payload: int) -> int:
    """Largest frame the server reads: a --max-payload message sent as
    ``data_b64`` (4/3 of it), plus 4 KiB for the JSON around it."""
    return (max_payload + 2) // 3 * 4 + 4096
