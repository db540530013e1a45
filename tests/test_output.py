"""Counting unsent output: what the slow-consumer limit and pacing are measured by."""
from __future__ import annotations

from twisted.internet.testing import StringTransport
from twisted.trial.unittest import SynchronousTestCase

from txpubsub.doors.output import unsent_bytes


class UnsentBytesTests(SynchronousTestCase):
    def test_tls_cleartext_before_the_handshake_counts(self) -> None:
        """TLS keeps cleartext of its own before the handshake; it counts as unsent,
        so a TLS client that never reads is cut off like a plain one."""

        class Inner(StringTransport):
            pass

        class TLSLike:  # forwards unknown attributes, as TLSMemoryBIOProtocol does
            def __init__(self) -> None:
                self.transport = Inner()
                self._appSendBuffer = [b"x" * 100, b"y" * 50]

            def __getattr__(self, name: str) -> object:
                return getattr(self.transport, name)

        wrapper = TLSLike()
        wrapper.transport.write(b"z" * 7)
        self.assertEqual(unsent_bytes(wrapper), 157)
