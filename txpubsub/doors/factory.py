"""The factory every session-owning door shares: one listener, one hub."""
from __future__ import annotations

from typing import Any, Callable, ClassVar

from twisted.internet.interfaces import IAddress
from twisted.internet.protocol import Factory, Protocol

from txpubsub.core.hub import Hub
from txpubsub.doors.codecs import Codec
from txpubsub.doors.output import Batcher
from txpubsub.doors.session import Door, DoorSettings, LazySession, Session


class DoorFactory(Factory):
    """Builds one kind of door for one listener.

    ``batcher`` and ``codec`` are shared by every listener of a server (pass
    the same objects), so one reactor turn writes each connection once and
    a message is encoded once per format; each factory makes its own if
    none is given.
    """

    noisy = False
    kind: ClassVar[str] = "line"  # the door's name in the counters
    protocol: Callable[[Any], Protocol]  # the door class: built with its factory
    make_codec: ClassVar[Callable[[], Codec]]
    # The server's Authenticator (txpubsub.auth) when it has --users, else None.
    auth: Any = None

    def __init__(
        self, hub: Hub, listener: str = "-", settings: DoorSettings | None = None, *,
        batcher: Batcher | None = None, codec: Codec | None = None,
    ) -> None:
        self.hub = hub
        self.listener = listener
        self.settings = settings or DoorSettings()
        self.batcher = batcher or Batcher(hub.clock)
        self.codec = codec or type(self).make_codec()
        self.counters = hub.counters_for(self.kind)

    def new_session(self, door: Door) -> Session:
        """The session a new door of this listener owns."""
        kind = Session if self.codec.eager else LazySession
        return kind(door, self.hub, self.listener, self.settings, self.codec,
                    self.batcher, self.counters)

    def buildProtocol(self, addr: IAddress | None) -> Protocol:
        proto = self.protocol(self)
        proto.factory = self
        return proto
