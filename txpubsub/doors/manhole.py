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
from twisted.conch.telnet import TelnetBootstrapProtocol, TelnetTransport
from twisted.internet.protocol import ServerFactory


def manhole_factory(namespace: dict[str, Any]) -> ServerFactory:
    """A factory of manhole sessions sharing ``namespace`` (hub, service, reactor)."""
    factory = ServerFactory()
    factory.noisy = False
    factory.protocol = lambda: TelnetTransport(
        TelnetBootstrapProtocol, insults.ServerProtocol, ColoredManhole, namespace
    )
    return factory
