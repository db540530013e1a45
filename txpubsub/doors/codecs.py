"""The codecs of the line protocol and raw feeds (txpubsub.core.codec says how
codecs work)."""
from __future__ import annotations

from txpubsub.core.codec import Codec
from txpubsub.wire.line import encode_message


def line_codec() -> Codec:
    """``MSG``/``MSGB`` lines, for the line protocol."""
    return Codec(encode_message, eager=True)


def bare_codec() -> Codec:
    """The payload alone and CRLF, for raw ``--feed`` readers."""
    return Codec(lambda m: m.payload + b"\r\n", eager=True)


__all__ = ["Codec", "bare_codec", "line_codec"]
