"""``--log-format`` and ``--log-level``: twistd's log as JSON lines, and filtered.

twistd logs to the application's ``ILogObserver`` component when it has one
(and no ``--logger`` was given), so the server sets one on the application
it is put in, built from twistd's own options (``--logfile``, ``--syslog``,
``-n``). Without these options nothing is set: the log is twistd's as ever.

Events below the level are dropped before they are formatted: formatting
(a timestamp per event) is what a connection line costs (docs/benchmarks.md).
"""
from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import (
    FilteringLogObserver,
    ILogObserver,
    InvalidLogLevelError,
    LogEvent,
    LogLevel,
    LogLevelFilterPredicate,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.logfile import LogFile
from zope.interface import implementer

# Each client's connect and disconnect lines (txpubsub.core.hub).
CONNECTIONS = "txpubsub.connections"
FORMATS = ("text", "json")
LEVELS = ", ".join(level.name for level in LogLevel.iterconstants())


def parse_levels(spec: str) -> tuple[LogLevel, dict[str, LogLevel]]:
    """``LEVEL[,NAMESPACE=LEVEL...]``: the level of everything, and of some
    namespaces (with what is below them); ValueError says what is wrong."""
    default = LogLevel.info
    namespaces: dict[str, LogLevel] = {}
    for part in spec.split(","):
        namespace, equals, name = part.strip().rpartition("=")
        try:
            level = LogLevel.levelWithName(name.strip().lower())
        except InvalidLogLevelError:
            raise ValueError(f"expected a level ({LEVELS}) or NAMESPACE=LEVEL, "
                             f"got {part.strip()!r}") from None
        if equals:
            if not namespace.strip():
                raise ValueError(f"no namespace before = in {part.strip()!r}")
            namespaces[namespace.strip()] = level
        else:
            default = level
    return default, namespaces


def check_levels(value: str) -> str:
    """The coerce of ``--log-level``: the value itself, once it parses."""
    parse_levels(value)
    return value


check_levels.coerceDoc = ""  # type: ignore[attr-defined]


def level_filter(observer: ILogObserver, spec: str) -> ILogObserver:
    """``observer`` seeing only the events at or above the levels of ``spec``."""
    default, namespaces = parse_levels(spec)
    predicate = LogLevelFilterPredicate(defaultLogLevel=default)
    for namespace, level in namespaces.items():
        predicate.setLogLevelForNamespace(namespace, level)
    return FilteringLogObserver(observer, [predicate])


def _log_file(twistd: Mapping[str, Any]) -> Any:
    """Where twistd would write its log: stdout in the foreground unless
    --logfile says otherwise, twistd.log for a daemon."""
    path = twistd.get("logfile") or ""
    if path == "-" and not twistd.get("nodaemon"):
        raise SystemExit("Daemons cannot log to stdout, exiting!")  # as twistd says it
    if path == "-" or (not path and twistd.get("nodaemon")):
        return sys.stdout
    return LogFile.fromFullPath(path or "twistd.log")


def _twistd_text(twistd: Mapping[str, Any]) -> ILogObserver:
    """twistd's own text observer (which also knows --syslog and -n)."""
    try:
        from twisted.scripts._twistd_unix import UnixAppLogger

        observer: ILogObserver = UnixAppLogger(twistd)._getLogObserver()
        return observer
    except (ImportError, AttributeError):  # not on Unix, or Twisted changed
        return textFileLogObserver(_log_file(twistd))


# Keys of twisted.python.log's legacy events, said again by the record's own.
_LEGACY = frozenset({"message", "time", "system", "isError", "format", "why", "failure"})


@implementer(ILogObserver)
class JsonLines:
    """One JSON object a line: time (ISO 8601, UTC), level, namespace, the
    formatted message, the event's own simple fields, and any traceback."""

    def __init__(self, out: IO[str]) -> None:
        self.out = out

    def __call__(self, event: LogEvent) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(event.get("log_time", 0.0),
                                           timezone.utc).isoformat(timespec="milliseconds"),
            "level": level.name if level is not None else "info",
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if (not key.startswith("log_") and key not in _LEGACY and key not in record
                    and (value is None or isinstance(value, (str, int, float, bool)))):
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self.out.write(json.dumps(record, default=repr) + "\n")
        self.out.flush()


def observer_for(twistd: Mapping[str, Any], log_format: str, levels: str) -> ILogObserver | None:
    """The observer for these options, or None for twistd's as it is."""
    if log_format == "text" and levels == "info":
        return None
    if log_format == "json":
        # Not jsonFileLogObserver's records: those are Twisted's own (to load
        # back with eventsFromJSONLogFile), with no formatted message for a shipper.
        observer: ILogObserver = JsonLines(_log_file(twistd))
    else:
        observer = _twistd_text(twistd)
    return level_filter(observer, levels)
