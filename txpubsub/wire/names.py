"""What names, channels, patterns and numbers may look like (PROTOCOL.md "Names").

Every check raises HubError with the protocol's code; the hub and the doors
share these so that every way in refuses the same things the same way.
"""
from __future__ import annotations

import re

from txpubsub.wire.errors import HubError, shorten

MAX_CHANNEL = 128

# Explicit ASCII classes: \d and \w would admit other scripts' digits and letters.
_TOKEN = r"[A-Za-z0-9_\-:/]+"
_PTOKEN = rf"(?:{_TOKEN}|\*)"
_CHANNEL = re.compile(rf"{_TOKEN}(?:\.{_TOKEN})*")
_SYS_CHANNEL = re.compile(rf"\$sys(?:\.{_TOKEN})+")
_PATTERN = re.compile(rf"{_PTOKEN}(?:\.{_PTOKEN})*(?:\.>)?|>")
_SYS_PATTERN = re.compile(rf"\$sys(?:\.{_PTOKEN})*\.(?:{_PTOKEN}|>)")
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_\-]{0,31}")
_CLIENT_ID = re.compile(r"c[0-9]+")
_DIGITS = re.compile(r"[0-9]+")
# No protocol number needs more digits (leading zeros aside), and CPython's
# int() refuses a string of more than sys.get_int_max_str_digits() (4300
# by default, never set lower than 640) with a ValueError.
_MOST_DIGITS = 640

# The kinds of channel.
PLAIN = "plain"
SYSTEM = "system"
INBOX = "inbox"


def is_client_id(text: str) -> bool:
    """True for the server-assigned id form, ``c`` followed by digits."""
    return _CLIENT_ID.fullmatch(text) is not None


def check_name(name: str) -> str:
    """A valid client name, or HubError bad-args."""
    if _NAME.fullmatch(name) is None or is_client_id(name):
        raise HubError(
            "bad-args",
            f"bad name {shorten(name)!r}: 1-32 of A-Z a-z 0-9 _ -, starting with a letter, "
            "not c<digits>",
        )
    return name


def channel_kind(channel: str) -> str:
    """PLAIN, SYSTEM or INBOX for a concrete channel name, or HubError bad-channel.

    An inbox is ``@`` and a client name or, as our extension, a client id.
    """
    if 0 < len(channel) <= MAX_CHANNEL:
        first = channel[0]
        if first == "@":
            rest = channel[1:]
            if _NAME.fullmatch(rest) is not None:
                return INBOX
        elif first == "$":
            if _SYS_CHANNEL.fullmatch(channel) is not None:
                return SYSTEM
        elif _CHANNEL.fullmatch(channel) is not None:
            return PLAIN
    raise HubError("bad-channel", f"bad channel name {shorten(channel)!r}")


def is_wildcard(pattern: str) -> bool:
    """True when a (valid) pattern has a ``*`` or ``>`` token."""
    return "*" in pattern or pattern == ">" or pattern.endswith(".>")


def pattern_kind(pattern: str) -> str:
    """PLAIN, SYSTEM or INBOX for a pattern (wildcards allowed), or HubError bad-channel."""
    if not is_wildcard(pattern):
        return channel_kind(pattern)
    if len(pattern) <= MAX_CHANNEL:
        if pattern[0] == "$":
            if _SYS_PATTERN.fullmatch(pattern) is not None:
                return SYSTEM
        elif _PATTERN.fullmatch(pattern) is not None:
            return PLAIN
    raise HubError("bad-channel", f"bad pattern {shorten(pattern)!r}")


def pattern_matches(pattern: str, channel: str) -> bool:
    """Whether a valid pattern matches a valid concrete channel (one at a time).

    The index does this for every subscription at once; this is for listings.
    """
    if pattern == channel:
        return True
    ptoks = pattern.split(".")
    ctoks = channel.split(".")
    if ptoks[0] in ("*", ">") and channel[0] in "$@":
        return False
    for i, ptok in enumerate(ptoks):
        if ptok == ">":
            return len(ctoks) > i
        if i >= len(ctoks) or (ptok != "*" and ptok != ctoks[i]):
            return False
    return len(ptoks) == len(ctoks)


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A valid pattern as a regular expression whose ``fullmatch`` is
    ``pattern_matches``: a listing tests many names in C, not in Python."""
    tokens = pattern.split(".")
    parts = [{"*": r"[^.]+", ">": r".+"}.get(tok, re.escape(tok)) for tok in tokens]
    guard = r"(?![$@])" if tokens[0] in ("*", ">") else ""
    return re.compile(guard + r"\.".join(parts))


def split_args(rest: bytes) -> list[str]:
    """A command's space-separated arguments (the line is already known to be UTF-8)."""
    return [arg.decode() for arg in rest.split(b" ") if arg]


def parse_number(text: str, what: str) -> int:
    """A protocol number: ASCII decimal digits only, else HubError bad-args;
    one of more than 640 digits (leading zeros aside) is out of range."""
    if _DIGITS.fullmatch(text) is None:
        raise HubError("bad-args", f"{what} must be decimal digits, not {shorten(text)!r}")
    digits = text.lstrip("0")
    if len(digits) > _MOST_DIGITS:
        raise HubError("bad-args", f"{what} is out of range ({len(digits)} digits)")
    return int(digits or "0")
