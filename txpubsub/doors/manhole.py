"""The manhole: a Python prompt inside the running server, on a 0600 Unix socket.

Built on twisted.conch's manhole (ColoredManhole over telnet framing). There
is no password: whoever can open the socket file (mode 0600, so its owner)
gets the prompt, as with the admin socket. Connect with
``socat -,rawer UNIX-CONNECT:PATH`` (see docs/admin.md).
"""
from __future__ import annotations

from typing import Any

from twisted.conch.insults import insults
from twisted.conch.manhole import ColoredManhole
from twisted.conch.telnet import OptionRefused, TelnetBootstrapProtocol, TelnetTransport
from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionClosed
from twisted.internet.protocol import ServerFactory
from twisted.python.failure import Failure


def _unanswered(failure: Failure) -> None:
    failure.trap(ConnectionClosed, OptionRefused)


class ManholeTelnet(TelnetTransport):
    """Telnet framing whose option negotiations may go unanswered.

    TelnetBootstrapProtocol asks the client for line mode, window size and
    echo, and logs a negotiation that fails as critical. socat speaks no
    telnet and never answers, so each Ctrl-D logged four critical errors
    (ConnectionDone) as the connection closed; a client that refuses an
    option is no error either.
    """

    def do(self, option: bytes) -> Deferred[bool]:
        return super().do(option).addErrback(_unanswered)

    def will(self, option: bytes) -> Deferred[bool]:
        return super().will(option).addErrback(_unanswered)


def manhole_factory(namespace: dict[str, Any]) -> ServerFactory:
    """A factory of manhole sessions sharing ``namespace`` (hub, service, reactor)."""
    factory = ServerFactory()
    factory.noisy = False
    factory.protocol = lambda: ManholeTelnet(
        TelnetBootstrapProtocol, insults.ServerProtocol, ColoredManhole, namespace
    )
    return factory
