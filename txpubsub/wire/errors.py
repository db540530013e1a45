"""Protocol errors as values, and the reasons a connection is closed."""
from __future__ import annotations

from enum import Enum

ERROR_CODES = frozenset(
    {
        "unknown-command",
        "bad-args",
        "bad-channel",
        "bad-encoding",
        "no-such-channel",
        "no-such-client",
        "not-subscribed",
        "exists",
        "name-taken",
        "forbidden",
        "too-large",
        "too-many-subscriptions",
        "auth-required",
        "auth-failed",
        "rate-limited",
        # A durable store (disk failing, full, too far behind) or a shared
        # backplane (Redis down) cannot take the message now; not acknowledged.
        "unavailable",
        # Our extensions (docs/protocol.md): a bug in the server, logged there;
        # a server-wide or per-connection channel limit reached; a direct
        # message its recipient's DIRECT does not take.
        "internal-error",
        "too-many-channels",
        "refused",
    }
)


class HubError(Exception):
    """A refused request: a protocol error code and a human text.

    Doors turn it into ``-ERR <code> <text>``; it never closes a connection.
    """

    def __init__(self, code: str, text: str) -> None:
        assert code in ERROR_CODES, code
        super().__init__(code, text)
        self.code = code
        self.text = text

    def as_line(self) -> bytes:
        """The ``-ERR`` reply, CRLF-terminated."""
        return f"-ERR {self.code} {self.text}\r\n".encode()


class ServerFull(Exception):
    """A connection over --max-clients: the door answers BYE too-many-clients."""


class CloseReason(str, Enum):
    """Why a connection ended: feeds BYE, the logs and the connection log.

    The values that a server sends as ``BYE <reason>`` are the protocol's
    BYE reasons; ``quit``, ``closed-by-peer`` and ``error`` are only logged.
    """

    QUIT = "quit"
    PEER_CLOSED = "closed-by-peer"
    KICKED = "kicked"
    SLOW_CONSUMER = "slow-consumer"
    STALE = "stale"
    SHUTDOWN = "shutdown"
    LINE_TOO_LONG = "line-too-long"
    TOO_LARGE = "too-large"
    BAD_FRAME = "bad-frame"
    TOO_MANY_CLIENTS = "too-many-clients"
    AUTH_FAILED = "auth-failed"  # the last AUTH failure, or a certificate's name cannot be used
    AUTH_TIMEOUT = "auth-timeout"
    PROTECTED_MODE = "protected-mode"
    ERROR = "error"


def shorten(text: str, limit: int = 40) -> str:
    """Client input quoted in an error, cut to a readable length."""
    return text if len(text) <= limit else text[:limit] + "..."
