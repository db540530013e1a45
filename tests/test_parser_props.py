"""Property tests: the parser gives the same result however the bytes are split."""
from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.trial.unittest import SynchronousTestCase

from .helpers import Conn, make_hub

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
