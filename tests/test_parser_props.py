"""Property tests: the parser gives the same result however the bytes are split,
refused PUBB payloads (read past, not kept) included."""
from __future__ import annotations

import os
import tempfile

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.auth.authenticator import Authenticator
from txpubsub.doors.framing import LineFramer
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.session import DoorSettings

from .helpers import Conn, make_hub
from .test_auth import USERS, run_now

payloads = st.binary(max_size=40) | st.sampled_from(
    [b"", b"\r", b"\n", b"\r\n", b"\x00", b"a\rb", "é".encode(), b"\xff", b" lead", b"trail "]
)
text_payloads = st.text(
    st.characters(blacklist_characters="\n", blacklist_categories=["Cs"]), max_size=30
)
channels = st.sampled_from(["t", "t.a", "u"])


@st.composite
def scripts(draw):
    """A client's input: commands, PUB and PUBB with awkward payloads."""
    parts: list[bytes] = []
    expected: list[bytes] = []  # payloads the subscriber of t.> and t must see, in order
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["pub", "pubb", "ping", "bad", "blank"]))
        channel = draw(channels)
        eol = draw(st.sampled_from([b"\n", b"\r\n"]))
        if kind == "pub":
            payload = draw(text_payloads).encode()
            parts.append(b"PUB " + channel.encode() + b" " + payload + eol)
            if channel != "u":
                # A trailing CR just before the LF is line ending, not payload.
                expected.append(payload[:-1] if eol == b"\n" and payload.endswith(b"\r")
                                else payload)
        elif kind == "pubb":
            payload = draw(payloads)
            parts.append(b"PUBB %s %d%s%s%s" % (channel.encode(), len(payload), eol, payload,
                                                 draw(st.sampled_from([b"\n", b"\r\n"]))))
            if channel != "u":
                expected.append(payload)
        elif kind == "ping":
            parts.append(b"PING" + eol)
        elif kind == "bad":
            parts.append(b"NOPE \xff" + eol)
        else:
            parts.append(eol)
    return b"".join(parts), expected


def parse_deliveries(data: bytes) -> list[bytes]:
    """The payloads of MSG/MSGB lines, read the way a client would."""
    found = []
    pos = 0
    while pos < len(data):
        eol = data.index(b"\r\n", pos)
        line = data[pos:eol]
        pos = eol + 2
        if line.startswith(b"MSGB "):
            size = int(line.rsplit(b" ", 1)[1])
            found.append(data[pos:pos + size])
            assert data[pos + size:pos + size + 2] == b"\r\n"
            pos += size + 2
        elif line.startswith(b"MSG "):
            found.append(line.split(b" ", 4)[4])
    return found


def run(script: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
    hub = make_hub()
    reader = Conn(hub)
    reader.send(b"SUB t\nSUB t.>\n")
    writer = Conn(hub)
    out = []
    start = 0
    for cut in [*sorted(cuts), len(script)]:
        out.append(writer.send(script[start:cut]))
        start = max(start, cut)
    return b"".join(out), reader.take()


class ChunkingTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(scripts(), st.data())
    def test_any_split_same_result(self, script, data) -> None:
        """Whole, byte by byte or cut at random: same replies, same deliveries."""
        raw, expected = script
        whole = run(raw, [])
        cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=10))
        self.assertEqual(run(raw, cuts), whole)
        self.assertEqual(run(raw, list(range(len(raw)))), whole)
        self.assertEqual(parse_deliveries(whole[1]), expected)
        self.assertNotIn(b"Traceback", whole[0])


# -- the framer alone: kept and refused (discarded) payloads --------------------

class Recorder(LineFramer):
    """A framer whose PUBB lines announce payloads; one to channel ``no`` is
    refused (read past, not kept), as the line door does before AUTH."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, bytes]] = []

    def lineReceived(self, line: bytes) -> None:
        self.events.append(("line", line))
        if line.startswith(b"PUBB "):
            self.expect_payload(int(line.split()[-1]))
            if line.split()[1] == b"no":
                self.discard_payload()

    def dataReceived(self, data: bytes) -> None:
        super().dataReceived(data)
        # What a user would notice as memory: a refused payload is never kept.
        assert self._payload_kept or not self._payload_chunks

    def payloadReceived(self, payload: bytes) -> None:
        self.events.append(("payload", payload))

    def frameError(self) -> None:
        self.events.append(("bad-frame", b""))
        super().frameError()


def reference_events(stream: bytes) -> list[tuple[str, bytes]]:
    """What Recorder must report for ``stream``, read whole the obvious way."""
    events: list[tuple[str, bytes]] = []
    pos = 0
    while (eol := stream.find(b"\n", pos)) >= 0:
        line = stream[pos:eol]
        pos = eol + 1
        events.append(("line", line))
        if not line.startswith(b"PUBB "):
            continue
        size = int(line.split()[-1])
        payload, pos = stream[pos:pos + size], pos + size
        end = stream[pos:pos + 2]
        if pos >= len(stream) or end == b"\r":
            break  # not all there yet
        if end != b"\r\n" and end[:1] != b"\n":
            events.append(("bad-frame", b""))
            break
        pos += len(end) if end == b"\r\n" else 1
        events.append(("payload", b"" if line.split()[1] == b"no" else payload))
    return events


@st.composite
def framed_streams(draw):
    """PUB, PUBB (kept or refused, with awkward payloads, sometimes a bad
    frame), PING and blank lines; perhaps cut short at the end."""
    parts: list[bytes] = []
    for _ in range(draw(st.integers(1, 10))):
        kind = draw(st.sampled_from(["pubb", "pubb", "pub", "ping", "blank"]))
        eol = draw(st.sampled_from([b"\n", b"\r\n"]))
        if kind == "pubb":
            payload = draw(payloads)
            end = draw(st.sampled_from([b"\n", b"\r\n", b"\r\n", b"X", b"\r\r\n", b"\rX"]))
            parts.append(b"PUBB %s %d%s%s%s" % (draw(st.sampled_from([b"t", b"no"])),
                                               len(payload), eol, payload, end))
        elif kind == "pub":
            parts.append(b"PUB t " + draw(text_payloads).encode() + eol)
        else:
            parts.append(b"PING" + eol if kind == "ping" else eol)
    stream = b"".join(parts)
    return stream[:draw(st.integers(0, len(stream)))] if draw(st.booleans()) else stream


def frame(stream: bytes, cuts: list[int]) -> list[tuple[str, bytes]]:
    framer = Recorder()
    framer.makeConnection(StringTransport())
    start = 0
    for cut in [*sorted(cuts), len(stream)]:
        if cut > start:
            framer.dataReceived(stream[start:cut])
            start = cut
    return framer.events


class FramerChunkingTests(SynchronousTestCase):
    @settings(max_examples=300, deadline=None)
    @given(framed_streams(), st.data())
    def test_framer_matches_reference_however_split(self, stream, data) -> None:
        """Kept payloads arrive whole and exact, refused ones as b"" (never
        kept meanwhile), bad frames are caught: whole, byte by byte or cut
        anywhere, as a whole-stream reading says."""
        expected = reference_events(stream)
        cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=10))
        self.assertEqual(frame(stream, []), expected)
        self.assertEqual(frame(stream, cuts), expected)
        self.assertEqual(frame(stream, list(range(len(stream)))), expected)


# -- the line door with --users: PUBB refused before AUTH, kept after ------------

AUTH_REQUIRED = b"-ERR auth-required AUTH <user> <password> first\r\n"
BAD_ENCODING = b"-ERR bad-encoding lines must be UTF-8\r\n"


@st.composite
def auth_scripts(draw):
    """Commands before AUTH (PUBB refused, its payload read past), then bob's
    AUTH pipelined, then publishes that must arrive exactly; with the
    replies and deliveries a whole reading says."""
    parts: list[bytes] = []
    replies: list[bytes] = []
    expected: list[bytes] = []
    ids = 0

    def pubb(channel: bytes, payload: bytes) -> None:
        eol, end = draw(st.sampled_from([b"\n", b"\r\n"])), draw(st.sampled_from([b"\n", b"\r\n"]))
        parts.append(b"PUBB %s %d%s%s%s" % (channel, len(payload), eol, payload, end))

    for authed in (False, True):
        if authed:
            parts.append(b"AUTH bob bob-pw\r\n")
            replies.append(b"+OK bob\r\n")
        for _ in range(draw(st.integers(0, 6))):
            kind = draw(st.sampled_from(["pubb", "pubb", "pub", "ping", "bad", "other"]))
            payload = draw(payloads)
            if kind in ("pubb", "pub"):
                if kind == "pubb":
                    body = payload
                    pubb(b"news.uk", body)
                else:
                    body = draw(text_payloads).encode().rstrip(b"\r")
                    parts.append(b"PUB news.uk " + body + b"\r\n")
                if authed:
                    ids += 1
                    replies.append(b"+OK %d\r\n" % ids)
                    expected.append(body)
                else:
                    replies.append(AUTH_REQUIRED)
            elif kind == "ping":
                parts.append(b"PING\r\n")
                replies.append(b"PONG\r\n")
            elif kind == "bad":  # not UTF-8: refused, its payload read past all the same
                pubb(b"n\xe9ws.uk", payload)
                replies.append(BAD_ENCODING)
            else:  # not bob's to publish: refused once its payload is read
                pubb(b"chat.x", payload)
                replies.append(b"-ERR forbidden not allowed on chat.x\r\n" if authed
                               else AUTH_REQUIRED)
    return b"".join(parts), b"".join(replies), expected


class AuthChunkingTests(SynchronousTestCase):
    def setUp(self) -> None:
        fd, self.users = tempfile.mkstemp(suffix=".toml")
        with os.fdopen(fd, "w") as f:
            f.write(USERS)
        self.addCleanup(os.remove, self.users)

    def run_script(self, script: bytes, cuts: list[int]) -> tuple[bytes, bytes]:
        hub = make_hub()
        factory = LineDoorFactory(hub, "tcp:test", DoorSettings())
        factory.auth = Authenticator.from_file(hub, self.users, run_in_thread=run_now)
        reader = Conn(hub, factory)
        self.assertEqual(reader.send(b"AUTH alice alice pw with spaces\r\nSUB news.uk\r\n"),
                         b"+OK alice\r\n+OK subscribed news.uk 0\r\n")
        writer = Conn(hub, factory)
        out = []
        start = 0
        for cut in [*sorted(cuts), len(script)]:
            if cut > start:
                out.append(writer.send(script[start:cut]))
                start = cut
        return b"".join(out), reader.take()

    @settings(max_examples=150, deadline=None)
    @given(auth_scripts(), st.data())
    def test_refused_then_authenticated_pubb_however_split(self, script, data) -> None:
        """Before AUTH a PUBB is refused once its payload has gone by (never
        run as commands); AUTH pipelined behind it works; after it, PUBB
        and PUB deliver exactly their bytes: whole, cut anywhere or byte by
        byte."""
        raw, replies, expected = script
        cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=10))
        for split in ([], cuts, list(range(len(raw)))):
            out, delivered = self.run_script(raw, split)
            self.assertEqual(out, replies)
            self.assertEqual(parse_deliveries(delivered), expected)
