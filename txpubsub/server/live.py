"""What a reload (SIGHUP, admin RELOAD) may change in a running server.

The options are parsed again (the ``--config`` file as it is now, the same
command line over it) and compared with the running ones: limits change at
once, for connected clients too; anything else that changed is logged as
needing a restart.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

from twisted.logger import Logger

from txpubsub.core.hub import Hub
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.session import Session


def _hub(attribute: str, convert: Callable[[Any], Any] = int) -> Callable[[LiveSettings, Any],
                                                                           None]:
    def apply(live: LiveSettings, value: Any) -> None:
        setattr(live.hub, attribute, convert(value))
    return apply


def _door(field: str, convert: Callable[[Any], Any] = int) -> Callable[[LiveSettings, Any],
                                                                        None]:
    def apply(live: LiveSettings, value: Any) -> None:
        live.change_settings(**{field: convert(value)})
    return apply


def _max_clients(live: LiveSettings, value: Any) -> None:
    live.hub.registry.max_clients = int(value)


def _auth_timeout(live: LiveSettings, value: Any) -> None:
    if live.auth is not None:
        live.auth.timeout = float(value)


def _max_auth_checks(live: LiveSettings, value: Any) -> None:
    if live.auth is not None:
        live.auth.throttle.max_checks = int(value)


# Option name -> how to apply a new value to the running server.
RELOADABLE: dict[str, Callable[[LiveSettings, Any], None]] = {
    "max-payload": _hub("max_payload"),
    "max-clients": _max_clients,
    "max-subscriptions": _hub("max_subscriptions"),
    "max-subscriptions-all": _hub("max_subscriptions_total"),
    "max-channels": _hub("max_channels"),
    "max-client-channels": _hub("max_channels_per_client"),
    "max-retired": _hub("max_retired"),
    "history": _hub("default_history"),
    "max-history": _hub("max_history"),
    "max-replay": _hub("max_replay"),
    "max-list": _hub("max_list"),
    "max-history-bytes": _hub("max_history_bytes"),  # checked at the next publish
    "max-channel-bytes": _hub("max_channel_bytes"),  # channels made afterwards
    "max-publish-rate": _hub("max_publish_rate"),  # new connections
    "max-publish-bytes": _hub("max_publish_bytes_rate"),  # new connections
    "no-auto-create": _hub("auto_create", lambda flag: not flag),
    "max-buffer": _door("max_buffer"),
    "max-stall": _door("max_stall", lambda ms: int(ms) / 1000),
    "ping-interval": _door("ping_interval"),
    "max-line": _door("max_line"),  # new connections: a connection keeps its framing
    "tls-handshake-timeout": _door("handshake_timeout"),
    "auth-timeout": _auth_timeout,
    "max-auth-checks": _max_auth_checks,
}

# Not settings of the server, or re-read anyway (the users file's contents).
IGNORED = frozenset({"config", "help", "version"})


class LiveSettings:
    """The running server's changeable parts, and the options it runs with."""

    _log = Logger()

    def __init__(self, options: Any, hub: Hub, factories: list[DoorFactory],
                 auth: Any = None) -> None:
        self.options = options
        self.hub = hub
        self.factories = factories
        self.auth = auth

    def change_settings(self, **changes: Any) -> None:
        """New door settings for new connections and connected ones."""
        for factory in self.factories:
            factory.settings = dataclasses.replace(factory.settings, **changes)
        for client in self.hub.clients():
            session = client.session
            if isinstance(session, Session):
                session.update_settings(dataclasses.replace(session.settings, **changes))

    def reload(self, parse: Callable[[list[str]], Any]) -> str | None:
        """Parse the options again and apply what changed; None, or why the
        options could not be read (the running ones are kept)."""
        try:
            new = parse(self.options.arguments)
        except SystemExit as e:  # the config file's one line, or a usage error
            why = str(e.code)
        except Exception as e:
            why = str(e)
        else:
            self.apply(new)
            return None
        self._log.warn("options not reloaded, running ones kept: {why}", why=why)
        return why

    def apply(self, new: Any) -> list[str]:
        """Apply ``new`` options' changes; the option names that need a restart."""
        restart = []
        for name, value in sorted(new.items()):
            old = self.options.get(name)
            if name in IGNORED or value == old:
                continue
            change = RELOADABLE.get(name)
            if change is None:
                self._log.warn("option {option} changed from {old!r} to {new!r}: needs a "
                               "restart", option=name, old=old, new=value)
                restart.append(name)
                continue
            change(self, value)
            self._log.info("option {option} changed from {old!r} to {new!r}",
                           option=name, old=old, new=value)
            self.options[name] = value
        return restart

