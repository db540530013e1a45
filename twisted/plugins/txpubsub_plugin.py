"""The twistd plugin: `twistd -n txpubsub --port tcp:23400`.

Kept lazy on purpose: plugin discovery imports this file, so it must not
import the reactor or the server; txpubsub.tap is imported only when used.
"""
from twisted.application.service import ServiceMaker

txpubsub = ServiceMaker(
    "txpubsub",
    "txpubsub.tap",
    "A publish/subscribe message server (channels, wildcards, direct messages).",
    "txpubsub",
)
