"""The client libraries: ``Client`` and ``Connection`` for Twisted programs
(this package), ``txpubsub.client.blocking`` for scripts.

Nothing here imports the server side (tests/test_layout.py checks it).
"""
from txpubsub.client.connection import (
    Client,
    CommandError,
    Connection,
    Payload,
    ServerClosed,
)
from txpubsub.wire.parser import Delivery, Item, Reply, ServerLine

__all__ = [
    "Client",
    "CommandError",
    "Connection",
    "Delivery",
    "Item",
    "Payload",
    "Reply",
    "ServerClosed",
    "ServerLine",
]
