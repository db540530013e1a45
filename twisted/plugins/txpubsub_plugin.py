"""The twistd plugin: `twistd -n txpubsub --port tcp:23400`.

Kept lazy on purpose: plugin discovery imports this file, so it must not
import the reactor or the server; txpubsub.server.tap is imported only when used.
"""
from twisted.application.service import ServiceMaker

txpubsub = ServiceMaker(
    "txpubsub",
    "txpubsub.server.tap",
    "A publish/subscribe message server (channels, wildcards, direct messages).",
    "txpubsub",
)
