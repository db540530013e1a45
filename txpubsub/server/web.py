"""The ``--ws`` listeners: a web console and JSON WebSocket per endpoint."""
from __future__ import annotations

from typing import Any

from txpubsub.core.hub import Hub
from txpubsub.doors.output import Batcher
from txpubsub.doors.session import DoorSettings
from txpubsub.doors.web import console_site
from txpubsub.doors.websocket import json_codec, json_socket_factory
from txpubsub.server.listeners import ListenerService


def web_listeners(reactor: Any, hub: Hub, descriptions: list[str], origins: tuple[str, ...],
                  settings: DoorSettings, batcher: Batcher,
                  auth: Any = None) -> list[ListenerService]:
    """One Site per ``--ws`` endpoint; all of them share one JSON codec, so a
    message is encoded once for every WebSocket subscriber. ``auth``: the
    Authenticator with --users."""
    codec = json_codec()
    listeners = []
    for description in descriptions:
        sockets = json_socket_factory(hub, description, settings, origins, batcher=batcher,
                                      codec=codec)
        sockets.doors.auth = auth
        listener = ListenerService(reactor, description, console_site(sockets))
        listener.doors = sockets.doors  # its settings change on reload
        listeners.append(listener)
    return listeners
