"""twistd's view of txpubsub: the Options and makeService(options)."""
from __future__ import annotations

import dataclasses
import math
import os
import re
import stat
import sys
from functools import partial
from typing import Any, Callable

from twisted.application.service import IService
from twisted.copyright import version as twisted_version
from twisted.internet.endpoints import serverFromString
from twisted.python import usage

import txpubsub
from txpubsub.core.hub import Hub, new_epoch
from txpubsub.core.system import SystemTicker
from txpubsub.doors.admin import AdminFactory
from txpubsub.doors.codecs import bare_codec, line_codec
from txpubsub.doors.factory import DoorFactory
from txpubsub.doors.feeds import FeedFactory, IngestFactory, ensure_channel, parse_binding
from txpubsub.doors.line import LineDoorFactory
from txpubsub.doors.manhole import manhole_factory
from txpubsub.doors.output import Batcher
from txpubsub.doors.session import DoorSettings
from txpubsub.server.config import ConfigError, file_arguments, find_config
from txpubsub.server.lifecycle import Lifecycle
from txpubsub.server.listeners import ListenerService
from txpubsub.server.live import LiveSettings
from txpubsub.server.logs import check_levels, observer_for
from txpubsub.server.notify import Notifier
from txpubsub.server.startup import ServerService
from txpubsub.store.sqlite import SYNC_MODES, StoreError, open_store

DEFAULT_PORT = "tcp:23400:interface=127.0.0.1"


def _int_at_least(low: int) -> Callable[[str], int]:
    def coerce(value: str) -> int:
        if not (value.isascii() and value.isdigit()) or int(value) < low:
            raise ValueError(f"expected a whole number of at least {low}, got {value!r}")
        return int(value)

    coerce.coerceDoc = f"A whole number, at least {low}."  # type: ignore[attr-defined]
    return coerce


def _choice(*allowed: str) -> Callable[[str], str]:
    def coerce(value: str) -> str:
        if value not in allowed:
            raise ValueError(f"expected one of {', '.join(allowed)}, got {value!r}")
        return value

    coerce.coerceDoc = f"One of {', '.join(allowed)}."  # type: ignore[attr-defined]
    return coerce


def _positive_seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"expected a number of seconds above 0, got {value!r}")
    return seconds


_positive_seconds.coerceDoc = "Seconds, above 0 (0.1 is allowed)."  # type: ignore[attr-defined]


def _socket_path(value: str) -> str:
    """A path where a Unix socket can be made (or a stale one replaced), or none."""
    if value == "none":
        return value
    directory = os.path.dirname(value) or "."
    if not os.path.isdir(directory):
        raise ValueError(f"no directory {directory}")
    _check_private_directory(directory)
    try:
        mode = os.lstat(value).st_mode
    except FileNotFoundError:
        return value
    except OSError as e:
        raise ValueError(f"{value}: {e.strerror}") from None
    if not stat.S_ISSOCK(mode):
        raise ValueError(f"{value} exists and is not a socket; give another path")
    return value


_socket_path.coerceDoc = ""  # type: ignore[attr-defined]


def _check_private_directory(directory: str) -> None:
    """Refuse a directory other users may write to (ValueError saying so).

    There another user could plant the socket's ``.lock`` (blocking the
    start) or put their own socket at the path. A sticky directory of ours
    is allowed: others cannot remove or rename what we make in it.
    """
    try:
        info = os.stat(directory)
    except OSError as e:
        raise ValueError(f"{directory}: {e.strerror}") from None
    sticky_ours = info.st_mode & stat.S_ISVTX and info.st_uid == os.getuid()
    if info.st_mode & stat.S_IWOTH and not sticky_ours:
        shown = directory if directory != "." else f". ({os.path.abspath(directory)})"
        raise ValueError(f"directory {shown} is writable by other users, who could take the "
                         "socket's place; give a path in a directory only you can write to")


def _http_endpoint(value: str) -> str:
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ValueError("needs prometheus_client: pip install 'txpubsub[metrics]'") from None
    try:
        serverFromString(None, value)
    except Exception as e:  # a bad string, a missing key file
        raise ValueError(f"bad endpoint {value!r}: {e}") from None
    return value


_http_endpoint.coerceDoc = ""  # type: ignore[attr-defined]


def _naming_the_option(parameters: list[list[Any]]) -> list[list[Any]]:
    """``optParameters`` whose bad values are reported as ``--NAME: why``.

    usage.Options reports a coerce's ValueError as "Parameter type enforcement
    failed: why", naming no option; after twistd's whole usage text, the user
    cannot tell which value was wrong.
    """
    named = []
    for name, short, default, doc, *coerce in parameters:
        if coerce:
            named.append([name, short, default, doc, _named(name, coerce[0])])
        else:
            named.append([name, short, default, doc])
    return named


def _named(name: str, coerce: Callable[[str], Any]) -> Callable[[str], Any]:
    def coerce_named(value: str) -> Any:
        try:
            return coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{name}: {e}") from None

    coerce_named.coerceDoc = getattr(coerce, "coerceDoc", "")  # type: ignore[attr-defined]
    return coerce_named


def unix_endpoint(path: str) -> str:
    """A private Unix socket endpoint for a path: mode 0600, and a lock file
    so that a stale socket is replaced but a live server's is not taken."""
    escaped = path.replace("\\", "\\\\").replace(":", "\\:")
    return f"unix:{escaped}:mode=600:lockfile=1"


def _store_spec(value: str) -> str:
    if value != "memory" and not (value.startswith("sqlite:") and len(value) > 7):
        raise ValueError(f"expected memory or sqlite:PATH, got {value!r}")
    return value


_store_spec.coerceDoc = "memory or sqlite:PATH."  # type: ignore[attr-defined]


def _sync_mode(value: str) -> str:
    if value not in SYNC_MODES:
        raise ValueError(f"expected normal or full, got {value!r}")
    return value


_sync_mode.coerceDoc = "normal or full."  # type: ignore[attr-defined]
def _redis_url(value: str) -> str:
    from txpubsub.backplane.address import RedisAddress

    RedisAddress.parse(value)
    try:
        import txredisapi  # noqa: F401
    except ImportError:
        raise ValueError("needs txredisapi: pip install 'txpubsub[redis]'") from None
    return value


_redis_url.coerceDoc = ""  # type: ignore[attr-defined]


# twistd before Twisted 26.10 (the newest on Python 3.9, so PyPy's) printed
# a usage error and exited 0 (twisted/twisted#12656): a supervisor took a
# bad option for a clean stop. Then the plugin exits 1 itself.
_TWISTED = re.match(r"(\d+)\.(\d+)", twisted_version)
TWISTD_EXITS_ZERO = _TWISTED is not None and (int(_TWISTED[1]), int(_TWISTED[2])) < (26, 10)


class Options(usage.Options):
    """``twistd txpubsub`` options; ``--help`` shows each default."""

    synopsis = "[--port ENDPOINT ...] [options]"
    longdesc = (
        "A publish/subscribe message server. Clients speak a line protocol "
        "(try: telnet 127.0.0.1 23400, then HELP). The protocol, the admin socket, TLS "
        "and operations are documented in README.md and docs/ in txpubsub's source "
        "tree (and its sdist); the wheel installs no documentation."
    )
    optFlags = [
        [
            "no-auto-create",
            None,
            "PUB/PUBB/SUB to a channel that does not exist get -ERR no-such-channel "
            "instead of creating it (CREATE still works).",
        ],
        [
            "allow-anonymous",
            None,
            "Without --users, let clients from other machines in (protected mode "
            "answers them BYE protected-mode otherwise).",
        ],
    ]
    optParameters = _naming_the_option([
        ["max-line", None, 65536, "Longest client line in bytes.", _int_at_least(64)],
        ["max-payload", None, 1048576, "Largest message payload in bytes.", _int_at_least(1)],
        ["max-clients", None, 10000, "Most client connections at once.", _int_at_least(1)],
        [
            "max-subscriptions",
            None,
            10000,
            "Most subscriptions per connection.",
            _int_at_least(1),
        ],
        ["history", None, 100, "Messages a new channel keeps.", _int_at_least(0)],
        [
            "max-history",
            None,
            10000,
            "Largest history= a client may ask for in CREATE.",
            _int_at_least(0),
        ],
        [
            "max-replay",
            None,
            1000,
            "Most messages one SUB last=/since= or HISTORY sends.",
            _int_at_least(0),
        ],
        [
            "max-list",
            None,
            1000,
            "Most lines one LIST or WHO sends; then +OK <n> more (continue with after=).",
            _int_at_least(1),
        ],
        [
            "max-channels",
            None,
            100000,
            "Most channels at once; then PUB/SUB/CREATE of a new one get "
            "-ERR too-many-channels.",
            _int_at_least(1),
        ],
        [
            "max-client-channels",
            None,
            10000,
            "Most channels one connection may create (by PUB, SUB or CREATE).",
            _int_at_least(0),
        ],
        [
            "max-subscriptions-all",
            None,
            1000000,
            "Most subscriptions held by all connections together.",
            _int_at_least(1),
        ],
        [
            "max-retired",
            None,
            100000,
            "Names of forgotten or dropped channels whose last ids are kept exactly "
            "(older ones share 65536 high-water marks).",
            _int_at_least(0),
        ],
        [
            "max-history-bytes",
            None,
            1073741824,
            "Payload bytes all channels' history keeps; past it the oldest messages of "
            "the largest channels go first.",
            _int_at_least(1),
        ],
        [
            "max-channel-bytes",
            None,
            67108864,
            "Payload bytes one channel's history keeps, whatever its history=; past it "
            "its oldest go.",
            _int_at_least(1),
        ],
        [
            "max-publish-rate",
            None,
            20000,
            "Messages a second one connection may publish, direct ones too, then -ERR "
            "rate-limited (a second's worth at once). 0: no limit.",
            _int_at_least(0),
        ],
        [
            "max-publish-bytes",
            None,
            4194304,
            "Payload bytes a second one connection may publish, then -ERR rate-limited "
            "(a second's worth at once, never less than one largest payload). 0: no limit.",
            _int_at_least(0),
        ],
        [
            "store",
            None,
            "memory",
            "Where history lives: memory (lost at restart, new epoch each start) or "
            "sqlite:PATH (kept, ids and epoch go on).",
            _store_spec,
        ],
        [
            "store-sync",
            None,
            "normal",
            "With sqlite: normal (a killed process loses nothing acknowledged) or full "
            "(fsync per commit: a power cut neither).",
            _sync_mode,
        ],
        [
            "redis",
            None,
            None,
            "Share channels with the servers using this Redis: redis://[:PASSWORD@]HOST"
            "[:PORT][/DB], rediss://... (TLS) or unix:///PATH[?db=N] (docs/cluster.md).",
            _redis_url,
        ],
        [
            "admin",
            None,
            "txpubsub-admin.sock",
            "Unix socket path for the admin protocol (mode 0600), or none.",
            _socket_path,
        ],
        [
            "manhole",
            None,
            None,
            "Unix socket path for a Python prompt inside the server (mode 0600); off unless given.",
            _socket_path,
        ],
        [
            "connection-log",
            None,
            10000,
            "Past connections kept for the admin CONNECTIONS command.",
            _int_at_least(0),
        ],
        [
            "max-buffer",
            None,
            8 * 1024 * 1024,
            "Most unsent output bytes per connection before BYE slow-consumer.",
            _int_at_least(65536),
        ],
        [
            "max-stall",
            None,
            100,
            "Milliseconds a lagging subscriber may pause its publishers for, until it "
            "drains (0: never pause publishers).",
            _int_at_least(0),
        ],
        [
            "tls-name-from",
            None,
            "none",
            "On TLS listeners, take each client's name from its certificate: cn, san "
            "or none. Such a client cannot rename itself.",
            _choice("none", "cn", "san"),
        ],
        [
            "tls-handshake-timeout",
            None,
            10,
            "Seconds a TLS client has to finish its handshake.",
            _int_at_least(1),
        ],
        [
            "users",
            None,
            None,
            "A TOML file of users, password hashes and publish/subscribe rules "
            "(docs/auth.md); re-read on SIGHUP and admin RELOAD.",
        ],
        [
            "auth-timeout",
            None,
            10,
            "Seconds a client has to AUTH when --users has no anonymous rules.",
            _int_at_least(1),
        ],
        [
            "max-auth-checks",
            None,
            4,
            "Most password checks at once (AUTH past it: -ERR unavailable).",
            _int_at_least(1),
        ],
        [
            "ping-interval",
            None,
            60,
            "Seconds of silence before the server sends PING (0: never).",
            _int_at_least(0),
        ],
        [
            "time-interval",
            None,
            1.0,
            "Seconds between two $sys.time messages.",
            _positive_seconds,
        ],
        [
            "http",
            None,
            None,
            "Endpoint for operations: Prometheus /metrics, /healthz, /readyz (needs "
            "txpubsub[metrics]); off unless given.",
            _http_endpoint,
        ],
        [
            "log-format",
            None,
            "text",
            "text (twistd's log) or json (one JSON object a line, for log shippers).",
            _choice("text", "json"),
        ],
        [
            "log-level",
            None,
            "info",
            "Least level logged: debug, info, warn, error, critical; NAMESPACE=LEVEL "
            "for part (info,txpubsub.connections=warn: no connection lines).",
            check_levels,
        ],
        [
            "config",
            None,
            None,
            "A TOML file of these options (examples/txpubsub.toml); the command line "
            "wins. Re-read on SIGHUP and admin RELOAD.",
        ],
    ])

    def __init__(self) -> None:
        super().__init__()
        self["ports"] = []
        self["feeds"] = []
        self["ingests"] = []
        self["ws"] = []
        self["ws-origins"] = []
        self["resp"] = []
        # --config: what the file's repeatable options set, and the arguments
        # given (a reload parses them again with the file as it is then).
        self.from_file: dict[str, Any] = {}
        self.arguments: list[str] = []
        self.config_path: str | None = None

    def parseOptions(self, options: list[str] | None = None) -> None:
        arguments = sys.argv[1:] if options is None else list(options)
        self.arguments = arguments
        try:
            path = self.config_path = find_config(self, arguments)
            if path is not None:
                single, self.from_file = file_arguments(Options, path)
                arguments = single + arguments
            super().parseOptions(arguments)
        except usage.UsageError as e:
            twistd = getattr(self, "parent", None)  # set when twistd parses us
            if twistd is None or not TWISTD_EXITS_ZERO:
                raise
            # What twistd prints, and the exit status it gives since 26.10.
            print(twistd)
            print(f"{' '.join(sys.argv[0:2])}: {e}")
            raise SystemExit(1) from None

    def opt_resp(self, description: str) -> None:
        """Endpoint for Redis clients (RESP2/RESP3 pub/sub: docs/resp.md), repeatable"""
        self._check_endpoint("resp", description)
        self["resp"].append(description)

    def opt_feed(self, binding: str) -> None:
        """CHANNEL=ENDPOINT: every connection there receives CHANNEL's payloads as bare lines (repeatable)"""  # noqa: E501
        self["feeds"].append(self._binding("feed", binding, pattern=True))

    def opt_ingest(self, binding: str) -> None:
        """CHANNEL=ENDPOINT: every line a connection there sends is published to CHANNEL (repeatable)"""  # noqa: E501
        self["ingests"].append(self._binding("ingest", binding, pattern=False))

    def _binding(self, option: str, binding: str, pattern: bool) -> tuple[str, str]:
        try:
            channel, endpoint = parse_binding(binding, pattern=pattern)
        except ValueError as e:
            raise usage.UsageError(f"--{option}: bad binding {binding!r}: {e}") from None
        self._check_endpoint(option, endpoint)
        return channel, endpoint

    def opt_port(self, description: str) -> None:
        """Endpoint to listen on for clients, repeatable: tcp:PORT, tcp6:PORT, unix:PATH, ssl:PORT:privateKey=KEY:certKey=CERT, mtls:PORT:privateKey=KEY:certKey=CERT:caCerts=CA [default: tcp:23400:interface=127.0.0.1]"""  # noqa: E501
        self._check_endpoint("port", description)
        self["ports"].append(description)

    @staticmethod
    def _check_endpoint(option: str, description: str) -> None:
        try:
            # Parsing builds an endpoint without listening, so None will do as
            # the reactor here; it catches typos before the server starts.
            serverFromString(None, description)
        except Exception as e:  # a bad string, a missing key file, a bad certificate
            raise usage.UsageError(f"--{option}: bad endpoint {description!r}: {e}") from None

    def opt_version(self) -> None:
        """Print txpubsub's version (and Twisted's and Python's) and exit"""
        python = sys.version.split()[0]
        print(f"txpubsub {txpubsub.__version__} (Twisted {twisted_version}, "
              f"Python {python})")
        sys.exit(0)

    opt_p = opt_port

    def opt_ws(self, description: str) -> None:
        """Endpoint serving the web console at / and the JSON WebSocket at /ws, repeatable (ssl: gives wss); needs txpubsub[ws]"""  # noqa: E501
        try:
            import autobahn  # noqa: F401
        except ImportError:
            raise usage.UsageError(
                "--ws needs autobahn: pip install 'txpubsub[ws]'") from None
        self._check_endpoint("ws", description)
        self["ws"].append(description)

    def opt_ws_origin(self, origin: str) -> None:
        """Another origin whose pages may open the WebSocket (scheme://host[:port], or *), repeatable; the console's own is always allowed"""  # noqa: E501
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise usage.UsageError(
                f"bad --ws-origin {origin!r}: expected http(s)://host[:port] or *")
        self["ws-origins"].append(origin)

    def postOptions(self) -> None:
        defaults = Options()
        for key, value in self.from_file.items():
            if self[key] == defaults[key]:  # not given on the command line
                self[key] = value
        if not self["ports"]:
            self["ports"] = [DEFAULT_PORT]
        # Defaults are not coerced: check the default admin path too.
        _named("admin", _socket_path)(self["admin"])
        if self["history"] > self["max-history"]:
            if self.config_path is not None:
                # One line naming the file, as for its other errors (not --help).
                raise ConfigError(
                    f"txpubsub: {self.config_path}: history ({self['history']}) must not "
                    f"exceed max-history ({self['max-history']}), from this file or the "
                    "command line")
            raise usage.UsageError("--history: must not exceed --max-history")


def _users(options: Options, hub: Hub) -> Any:
    """The Authenticator for --users (None without), or SystemExit saying why not."""
    path = options["users"]
    if path is None:
        return None
    from txpubsub.auth.authenticator import Authenticator
    from txpubsub.auth.users import UsersFileError

    try:
        return Authenticator.from_file(hub, path, timeout=float(options["auth-timeout"]),
                                       max_checks=options["max-auth-checks"])
    except UsersFileError as e:
        raise SystemExit(f"txpubsub: --users: {e}") from None


def _check_raw_binding(auth: Any, feed: bool, channel: str, description: str) -> None:
    """Feed and ingest connections cannot AUTH: they are anonymous, so the
    anonymous rules must allow their channel, or the server does not start."""
    rules = auth.table.rules_for(None)
    allowed = rules.may_subscribe(channel) if feed else rules.may_publish(channel)
    if not allowed:
        option, verb = ("--feed", "subscribe") if feed else ("--ingest", "publish")
        raise SystemExit(
            f"txpubsub: {option} {channel}={description}: under --users its connections "
            f"are anonymous, and the users file's [anonymous] rules do not let them "
            f"{verb} to {channel}; add it to [anonymous] {verb} (docs/auth.md)")


def beyond_loopback(description: str) -> bool:
    """Whether a listener may take connections from other machines (an IP
    listener not bound to a loopback interface)."""
    if description.startswith("unix:"):
        return False
    for part in re.split(r"(?<!\\):", description):  # colons escaped as \: are data
        if part.startswith("interface="):
            interface = part[len("interface="):].replace("\\:", ":")
            return not (interface.startswith("127.") or interface in ("::1", "localhost"))
    return True


def _say_protected(descriptions: list[str]) -> None:
    """One startup line per listener that protected mode will guard."""
    from twisted.logger import Logger

    for description in descriptions:
        if beyond_loopback(description):
            Logger().warn(
                "protected mode: {listener} listens beyond loopback, but without --users only "
                "clients on this machine are let in (others get BYE protected-mode); give "
                "--users FILE (docs/auth.md) or --allow-anonymous", listener=description)


def _parse(arguments: list[str]) -> Options:
    """The options given by ``arguments`` (and the --config file among them, as it is now)."""
    options = Options()
    options.parseOptions(arguments)
    return options


def makeService(options: Options, reactor: Any = None) -> IService:
    """The hub and one listener per --port, as one service for twistd."""
    if reactor is None:
        from twisted.internet import reactor
    # twistd's own options (its pid file, its daemon's status pipe), when run by twistd.
    twistd_config = getattr(options, "parent", None)
    top = ServerService(twistd_config)
    if twistd_config is not None:
        top.make_log_observer = partial(observer_for, twistd_config, options["log-format"],
                                        options["log-level"])
    store = None
    spec = options["store"]
    try:
        if spec.startswith("sqlite:"):
            # A new file starts a new epoch; an existing one keeps its own.
            store = open_store(spec[len("sqlite:"):], reactor, new_epoch(),
                               options["store-sync"])
        hub = Hub(
            reactor,
            history=options["history"],
            max_history=options["max-history"],
            max_payload=options["max-payload"],
            max_clients=options["max-clients"],
            max_subscriptions=options["max-subscriptions"],
            auto_create=not options["no-auto-create"],
            max_replay=options["max-replay"],
            max_list=options["max-list"],
            max_channels=options["max-channels"],
            max_channels_per_client=options["max-client-channels"],
            max_subscriptions_total=options["max-subscriptions-all"],
            max_retired=options["max-retired"],
            max_publish_rate=options["max-publish-rate"],
            max_publish_bytes_rate=options["max-publish-bytes"],
            max_history_bytes=options["max-history-bytes"],
            max_channel_bytes=options["max-channel-bytes"],
            connection_log=options["connection-log"],
            store=store,
        )
    except StoreError as e:
        raise SystemExit(f"txpubsub: --store {spec}: {e}") from None
    hub.setName("hub")
    if options["redis"]:
        from txpubsub.backplane.address import RedisAddress
        from txpubsub.backplane.redis import RedisBackplane

        backplane = RedisBackplane(hub, RedisAddress.parse(options["redis"]), reactor)
        hub.set_backplane(backplane)
        backplane.setServiceParent(top)
    hub.setServiceParent(top)
    auth = _users(options, hub)
    SystemTicker(hub, time_interval=options["time-interval"]).setServiceParent(top)
    settings = DoorSettings(
        max_line=options["max-line"],
        max_buffer=options["max-buffer"],
        ping_interval=options["ping-interval"],
        max_stall=options["max-stall"] / 1000,
        tls_name_from=options["tls-name-from"],
        handshake_timeout=options["tls-handshake-timeout"],
        # Protected mode: with no users, only this machine may connect unless told.
        protected=auth is None and not options["allow-anonymous"],
    )
    # Only mtls: listeners ask for client certificates, so only they name clients by them.
    plain = dataclasses.replace(settings, tls_name_from="none")
    # One write per connection per reactor turn, and one encoding per message
    # and format, across every listener.
    batcher = Batcher(reactor)
    lines, bare = line_codec(), bare_codec()
    listeners: list[tuple[str, DoorFactory]] = [
        (description, LineDoorFactory(hub, description,
                                      settings if description.startswith("mtls:") else plain,
                                      batcher=batcher, codec=lines))
        for description in options["ports"]
    ]
    for _, factory in listeners:
        factory.auth = auth
    for kind, bindings in ((FeedFactory, options["feeds"]), (IngestFactory, options["ingests"])):
        for channel, description in bindings:
            if auth is not None:
                _check_raw_binding(auth, kind is FeedFactory, channel, description)
            ensure_channel(hub, channel)
            listeners.append((description, kind(channel, hub, description, plain,
                                                 batcher=batcher, codec=bare)))
    if options["resp"]:
        from txpubsub.doors.resp import RespDoorFactory, resp2_codec, resp3_codec

        resp2, resp3 = resp2_codec(), resp3_codec()
        for description in options["resp"]:
            factory = RespDoorFactory(hub, description, plain, batcher=batcher, codec=resp2,
                                      codec3=resp3)
            factory.auth = auth
            listeners.append((description, factory))
    services = [ListenerService(reactor, description, factory)
                for description, factory in listeners]
    if options["ws"]:
        from txpubsub.server.web import web_listeners

        services.extend(web_listeners(reactor, hub, options["ws"], tuple(options["ws-origins"]),
                                      plain, batcher, auth))
    if settings.protected:
        _say_protected([s.description for s in services])
    reread = None
    if options["config"] is not None:
        factories = [f for _, f in listeners] + [f for f in (getattr(
            s, "doors", None) for s in services) if isinstance(f, DoorFactory)]
        reread = partial(LiveSettings(options, hub, factories, auth).reload, _parse)
    lifecycle = Lifecycle(reactor, hub, list(services), users=auth, reread=reread)
    if options["http"] is not None:
        from txpubsub.server.http import Readiness, ops_site

        needs: dict[str, Any] = {"store": hub.store}
        if options["redis"]:
            needs["redis"] = hub.backplane
        readiness = Readiness(reactor, list(services), needs,
                              lambda: lifecycle.stopping is not None)
        services.append(ListenerService(reactor, options["http"], ops_site(hub, readiness)))
    if options["admin"] != "none":
        services.append(ListenerService(reactor, unix_endpoint(options["admin"]),
                                        AdminFactory(hub, lifecycle.shutdown, lifecycle.reload),
                                        socket_path=options["admin"]))
    if options["manhole"] and options["manhole"] != "none":
        namespace = {"hub": hub, "service": top, "reactor": reactor}
        services.append(ListenerService(reactor, unix_endpoint(options["manhole"]),
                                        manhole_factory(namespace),
                                        socket_path=options["manhole"]))
    for service in services:
        service.setServiceParent(top)
    lifecycle.setServiceParent(top)
    # Last: started once every listener listens, stopped first.
    lifecycle.notifier = Notifier(reactor, services)
    lifecycle.notifier.setServiceParent(top)
    return top
