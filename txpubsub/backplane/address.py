"""Where Redis is: the ``--redis`` URL, checked without importing a Redis client."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

from twisted.internet.interfaces import IStreamClientEndpoint

# Seconds Redis has to answer (a connection, a command) before the server
# gives up on it; a publish waits no longer for its reply.
REPLY_TIMEOUT = 2.0


@dataclass(frozen=True)
class RedisAddress:
    """Where Redis is, from a ``redis://``, ``rediss://`` or ``unix://`` URL."""

    scheme: str
    host: str = "127.0.0.1"
    port: int = 6379
    path: str = ""
    password: str | None = None
    username: str | None = None
    db: int = 0

    @classmethod
    def parse(cls, url: str) -> RedisAddress:
        """``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` (TLS),
        ``unix://[[user]:password@]/path[?db=N]``; ValueError if not one."""
        parts = urlsplit(url)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError(f"expected redis://, rediss:// or unix://, got {url!r}")
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        password = unquote(parts.password) if parts.password else query.get("password")
        username = unquote(parts.username) if parts.username else None
        db_text = query.get("db", "0")
        if parts.scheme == "unix":
            if not parts.path:
                raise ValueError(f"no socket path in {url!r}")
            path = parts.path
        else:
            path = ""
            db_text = parts.path.lstrip("/") or db_text
        if not db_text.isdigit():
            raise ValueError(f"bad database number in {url!r}")
        try:
            port = parts.port or 6379
        except ValueError:
            raise ValueError(f"bad port in {url!r}") from None
        return cls(parts.scheme, parts.hostname or "127.0.0.1", port, path, password,
                   username or None, int(db_text))

    @property
    def where(self) -> str:
        """Where Redis is, without the password: ``host:port/db`` or the socket path."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        place = self.path if self.scheme == "unix" else f"{host}:{self.port}"
        return f"{place}/{self.db}" if self.db else place

    def endpoint(self, reactor: Any) -> IStreamClientEndpoint:
        """A client endpoint for this address."""
        from twisted.internet.endpoints import (
            HostnameEndpoint,
            UNIXClientEndpoint,
            wrapClientTLS,
        )

        if self.scheme == "unix":
            return UNIXClientEndpoint(reactor, self.path, timeout=REPLY_TIMEOUT)
        endpoint = HostnameEndpoint(reactor, self.host, self.port, timeout=REPLY_TIMEOUT)
        if self.scheme == "rediss":
            from twisted.internet.ssl import optionsForClientTLS

            return wrapClientTLS(optionsForClientTLS(self.host), endpoint)
        return endpoint
