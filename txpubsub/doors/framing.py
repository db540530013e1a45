"""Line framing with length-prefixed payloads, linear in the bytes received."""
from __future__ import annotations

from typing import Any

from twisted.protocols.basic import LineReceiver


class LineFramer(LineReceiver):
    """A LineReceiver (LF-delimited) that can also read ``n`` raw bytes + EOL.

    ``LineReceiver.dataReceived`` re-splits its whole buffer for every line
    and concatenates every chunk onto it, so pipelined input costs quadratic
    time in the chunk (Twisted #6357) and a line trickled a byte at a time
    quadratic time in the line. This keeps the same contract (``lineReceived``,
    ``lineLengthExceeded``, ``MAX_LENGTH``, stop once the transport is
    disconnecting) with an offset into each chunk and a list of pieces for an
    unfinished line.

    ``MAX_LENGTH`` is the longest line, a CR just before the LF not counted.
    ``expect_payload(n)`` (called from ``lineReceived``) makes the next ``n``
    bytes, then CRLF or LF, arrive whole at ``payloadReceived``; anything
    else after them goes to ``frameError``. ``hold_input()`` stops reading,
    even in the middle of a chunk, until ``release_input()``.
    """

    delimiter = b"\n"
    MAX_LENGTH = 65536
    # A read of more than SLICE bytes and LINES_PER_TURN lines (64 KiB of
    # short commands is ~10,000 of them) is handled LINES_PER_TURN lines at
    # a time: after each slice ``lines_spent`` is called, and the line door
    # holds the rest for the next reactor turn. Lines are counted as they
    # are handled (counting a read's newlines first was a second pass over
    # it: ~460 instructions and a cache miss per line on CPython).
    LINES_PER_TURN = 1000
    SLICE = 8192
    transport: Any  # a TCP, TLS or Unix transport: more than ITransport promises
    # Slots: a server holds thousands of these (LineReceiver's own attributes
    # still live in the instance dict).
    __slots__ = ("_held", "_holding", "_payload_chunks", "_payload_cr", "_payload_kept",
                 "_payload_left", "_pieces", "_pieces_len")

    def __init__(self) -> None:
        self._pieces: list[bytes] | None = None
        self._pieces_len = 0
        self._payload_left: int | None = None
        self._payload_chunks: list[bytes] | None = None
        self._payload_cr = False
        self._payload_kept = True
        self._holding = False
        self._held = b""

    def hold_input(self) -> None:
        """Stop reading input (the rest of the current chunk waits too)."""
        if not self._holding:
            self._holding = True
            self.transport.pauseProducing()

    def release_input(self) -> None:
        """Go on reading, starting with whatever was held back."""
        if self._holding:
            self._holding = False
            held, self._held = self._held, b""
            if self.transport.disconnecting:
                return
            self.transport.resumeProducing()
            if held:
                self.dataReceived(held)

    def dataReceived(self, data: bytes) -> None:
        size = len(data)
        # Lines left before the others get a turn; -1 (never 0): no limit.
        turn = self.LINES_PER_TURN if size > self.SLICE else -1
        pos = 0
        transport = self.transport
        while pos < size and not transport.disconnecting:
            if self._holding:
                self._held += data[pos:]
                return
            if self._payload_left is not None:
                pos = self._take_payload(data, pos)
                continue
            eol = data.find(b"\n", pos)
            if eol < 0:
                self._keep_piece(data[pos:])
                return
            if self._pieces:
                self._pieces.append(data[pos:eol])
                line = b"".join(self._pieces)
                self._pieces = None
                self._pieces_len = 0
            else:
                line = data[pos:eol]
            pos = eol + 1
            if len(line) > self.MAX_LENGTH and not (
                len(line) == self.MAX_LENGTH + 1 and line[-1:] == b"\r"
            ):
                self.lineLengthExceeded(line)
                return
            self.lineReceived(line)
            turn -= 1
            if not turn:
                turn = self.LINES_PER_TURN
                if pos < size and not self._holding and not transport.disconnecting:
                    self.lines_spent()  # may hold the rest for the next turn

    def _keep_piece(self, piece: bytes) -> None:
        if self._pieces is None:
            self._pieces = []
        self._pieces.append(piece)
        self._pieces_len += len(piece)
        over = self._pieces_len - self.MAX_LENGTH
        # One byte over may still be the CR of a CRLF that has not arrived.
        if over > 1 or (over == 1 and piece[-1:] != b"\r"):
            pieces, self._pieces, self._pieces_len = self._pieces, None, 0
            self.lineLengthExceeded(b"".join(pieces))

    def take_unfinished_line(self) -> bytes:
        """The bytes of a line not ended yet (given up by the framer), or b""."""
        pieces, self._pieces, self._pieces_len = self._pieces, None, 0
        return b"".join(pieces) if pieces else b""

    def receiving_payload(self) -> bool:
        """Whether a payload announced by ``expect_payload`` is still arriving."""
        return self._payload_left is not None

    def expect_payload(self, nbytes: int) -> None:
        """Read the next ``nbytes`` bytes and a line end as one payload."""
        self._payload_left = nbytes
        self._payload_chunks = []
        self._payload_cr = False
        self._payload_kept = True

    def discard_payload(self) -> None:
        """The payload arriving is refused: read past it without keeping it
        (``payloadReceived`` gets b""), so a refused one costs no memory."""
        if self._payload_chunks is not None:
            self._payload_chunks = []
            self._payload_kept = False

    def _take_payload(self, data: bytes, pos: int) -> int:
        left = self._payload_left
        assert left is not None and self._payload_chunks is not None
        if left:
            taken = min(left, len(data) - pos)
            if self._payload_kept:
                self._payload_chunks.append(data[pos : pos + taken])
            pos += taken
            self._payload_left = left = left - taken
            if left or pos == len(data):
                return pos
        byte = data[pos]
        pos += 1
        if byte == 13 and not self._payload_cr:  # CR: an LF must follow
            self._payload_cr = True
            return pos
        chunks = self._payload_chunks
        self._payload_left = self._payload_chunks = None
        if byte == 10:
            self.payloadReceived(b"".join(chunks))
        else:
            self.frameError()
        return pos

    def lines_spent(self) -> None:
        """LINES_PER_TURN lines of a large read were handled; the rest goes on
        at once unless this calls ``hold_input``."""

    def payloadReceived(self, payload: bytes) -> None:
        """Called with a whole payload announced by ``expect_payload``."""
        raise NotImplementedError

    def frameError(self) -> None:
        """Called when a payload is not followed by CRLF or LF."""
        self.transport.loseConnection()
