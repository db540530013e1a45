"""``--config FILE``: twistd txpubsub's options from a TOML file.

Every command-line option goes in the file under the same name (without the
dashes); repeatable ones (``port``, ``feed``, ...) are lists. The file is
turned into arguments, each key checked by the same code as on the command
line, and the command line wins: a value given there replaces the file's
(a repeatable option given there replaces the file's whole list). A bad file
is one line naming the file, the line and the key, and exit status 1.
"""
from __future__ import annotations

import getopt
import re
import sys
from typing import Any, Callable

from twisted.python import usage

if sys.version_info >= (3, 11):
    import tomllib
else:  # PyPy 3.9
    import tomli as tomllib

# Options that are not settings of the server, so they have no place in a file.
NOT_IN_FILE = frozenset({"config", "help", "version"})


class ConfigError(SystemExit):
    """A config file that cannot be used: its text is the one line a user sees."""


def option_kinds(options: usage.Options) -> dict[str, str]:
    """Every long option of ``options`` by name: ``flag``, ``param`` (one
    value) or ``repeat`` (an ``opt_`` method taking a value, repeatable)."""
    kinds: dict[str, str] = {}
    for long in options.longOpt:
        name = long.rstrip("=")
        if name in NOT_IN_FILE:
            continue
        method = getattr(options, "opt_" + name.replace("-", "_"), None)
        if not long.endswith("="):
            kinds[name] = "flag"
        elif name in options.defaults:
            kinds[name] = "param"
        elif method is not None:
            kinds[name] = "repeat"
    return kinds


def find_config(options: usage.Options, argv: list[str]) -> str | None:
    """The path given to ``--config`` in ``argv``, if any (the last one wins)."""
    try:
        found, _ = getopt.getopt(argv, options.shortOpt, options.longOpt)
    except getopt.error:
        return None  # parseOptions will say what is wrong
    paths = [value for option, value in found if option == "--config"]
    return paths[-1] if paths else None


def read_file(path: str) -> tuple[dict[str, Any], str]:
    """The TOML file's top-level table and its text, or ConfigError naming the file."""
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        return tomllib.loads(text), text
    except OSError as e:
        raise ConfigError(f"txpubsub: --config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"txpubsub: --config {path}: not TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"txpubsub: --config {path}: not UTF-8 text") from None


def where(path: str, text: str, name: str) -> str:
    """``PATH:LINE`` of a top-level key (``PATH`` if it cannot be found, as
    for a key that is a table)."""
    found = re.search(rf"""^[ \t]*(?:{re.escape(name)}|"{re.escape(name)}"|'{re.escape(name)}')"""
                      r"[ \t]*=", text, re.M)
    if found is None:
        return path
    line = text.count("\n", 0, found.start()) + 1
    return f"{path}:{line}"


def key_arguments(place: str, name: str, kind: str | None, value: Any) -> list[str]:
    """One key of a file as command-line arguments; ConfigError if its type
    is wrong (``place``: where the key is, for the message)."""

    def bad(why: str) -> ConfigError:
        return ConfigError(f"txpubsub: {place}: {name}: {why}")

    if kind is None:
        raise bad("unknown option (twistd txpubsub --help lists them)")
    if kind == "flag":
        if not isinstance(value, bool):
            raise bad(f"expected true or false, got {value!r}")
        return [f"--{name}"] if value else []
    if kind == "repeat":
        values = [value] if isinstance(value, str) else value
        if not (isinstance(values, list) and all(isinstance(v, str) for v in values)):
            raise bad(f"expected a list of strings, got {value!r}")
        return [a for v in values for a in (f"--{name}", v)]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise bad(f"expected a number or a string, got {value!r}")
    return [f"--{name}", str(value)]


def file_arguments(
    make_options: Callable[[], usage.Options], path: str,
) -> tuple[list[str], dict[str, Any]]:
    """The file's single-valued options as arguments (to go before the
    command line's, which then win), and the values its repeatable options
    set (the command line's replace them). Each key is checked on its own,
    so that an error names it."""
    table, text = read_file(path)
    kinds = option_kinds(make_options())
    single: list[str] = []
    repeated: dict[str, Any] = {}
    for name, value in table.items():
        place = where(path, text, name)
        arguments = key_arguments(place, name, kinds.get(name), value)
        probe, fresh = make_options(), make_options()
        try:
            _parse_only(probe, arguments)
        except usage.UsageError as e:
            why = str(e).removeprefix(f"--{name}: ")
            raise ConfigError(f"txpubsub: {place}: {name}: {why}") from None
        if kinds[name] == "repeat":
            repeated.update({k: v for k, v in probe.items() if v != fresh.get(k)})
        else:
            single.extend(arguments)
    return single, repeated


def _parse_only(options: usage.Options, arguments: list[str]) -> None:
    """Parse ``arguments`` into ``options`` without its postOptions (whose
    cross-option checks belong to the whole command line)."""
    post = options.postOptions
    options.postOptions = lambda: None  # type: ignore[method-assign]
    try:
        options.parseOptions(arguments)
    finally:
        options.postOptions = post  # type: ignore[method-assign]
