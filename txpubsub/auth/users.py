"""The users file (``--users FILE``, TOML; docs/auth.md has a complete example).

    [users.alice]
    password = "$scrypt$ln=14,r=8,p=1$..."      # what `txpubsub passwd` printed
    publish = ["chat.>", "@*"]
    subscribe = ["chat.>", "news.>"]
    deny_publish = ["chat.announce"]            # optional; so is deny_subscribe

    [anonymous]                                 # optional: clients that never AUTH
    subscribe = ["news.>"]

Anything the server does not know (a misspelt key, a rule that is not a
pattern, a password that is not a hash) makes the whole file invalid, with
a message naming the place: a typo must not quietly open or close a channel.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

from txpubsub.auth.passwords import parse_hash
from txpubsub.auth.rules import NOTHING, Rules
from txpubsub.wire.errors import HubError
from txpubsub.wire.names import check_name

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.9 and 3.10 (PyPy): the same parser, from PyPI
    import tomli as tomllib

RULE_KEYS = ("publish", "subscribe", "deny_publish", "deny_subscribe")


class UsersFileError(Exception):
    """The users file cannot be used; the text says where and why."""


@dataclass(frozen=True)
class User:
    """One user of the file: its name, password hash (None: certificate only) and rules."""

    name: str
    password: str | None
    rules: Rules


@dataclass(frozen=True)
class UserTable:
    """Everything one reading of the users file says."""

    users: dict[str, User] = field(default_factory=dict)
    anonymous: Rules | None = None  # None: every client must authenticate
    source: str = "-"

    @property
    def decoy(self) -> str | None:
        """A user's password hash, checked for unknown users: their AUTH then
        costs what a real user's does, whatever cost the file's hashes have."""
        for user in self.users.values():
            if user.password is not None:
                return user.password
        return None

    def rules_for(self, user: str | None) -> Rules:
        """The rules of a user (NOTHING if the file no longer has it), or the
        anonymous rules for a client that did not authenticate."""
        if user is None:
            return self.anonymous or NOTHING
        found = self.users.get(user)
        return NOTHING if found is None else found.rules


def _rules(where: str, section: dict[str, Any], extra: tuple[str, ...]) -> Rules:
    unknown = sorted(set(section) - set(RULE_KEYS) - set(extra))
    if unknown:
        raise UsersFileError(f"{where}: unknown key {unknown[0]!r} (known: "
                             + ", ".join(RULE_KEYS + extra) + ")")
    lists = {}
    for key in RULE_KEYS:
        value = section.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise UsersFileError(f"{where}: {key} must be a list of strings")
        lists[key] = value
    try:
        return Rules(**lists)
    except ValueError as e:
        raise UsersFileError(f"{where}: {e}") from None


def parse_users(text: str, source: str = "-") -> UserTable:
    """A UserTable from the file's text; UsersFileError saying what is wrong."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise UsersFileError(f"{source}: not valid TOML: {e}") from None
    unknown = sorted(set(doc) - {"users", "anonymous"})
    if unknown:
        raise UsersFileError(f"{source}: unknown section [{unknown[0]}] "
                             "(known: [users.<name>], [anonymous])")
    sections = doc.get("users", {})
    if not isinstance(sections, dict):
        raise UsersFileError(f"{source}: users must be tables, [users.<name>]")
    users = {}
    for name, section in sections.items():
        where = f"{source}: [users.{name}]"
        try:
            check_name(name)
        except HubError as e:
            raise UsersFileError(f"{where}: a user name must be a client name: {e.text}") \
                from None
        if not isinstance(section, dict):
            raise UsersFileError(f"{where}: must be a table")
        password = section.get("password")
        if password is not None:
            if not isinstance(password, str):
                raise UsersFileError(f"{where}: password must be a string")
            try:
                parse_hash(password)
            except ValueError as e:
                raise UsersFileError(f"{where}: password: {e}") from None
        users[name] = User(name, password, _rules(where, section, ("password",)))
    anonymous = doc.get("anonymous")
    if anonymous is not None:
        if not isinstance(anonymous, dict):
            raise UsersFileError(f"{source}: anonymous must be a table, [anonymous]")
        anonymous = _rules(f"{source}: [anonymous]", anonymous, ())
    return UserTable(users, anonymous, source)


def load_users(path: str) -> UserTable:
    """Read and check the users file at ``path``; UsersFileError saying what is wrong."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UsersFileError(f"{path}: cannot read: {e}") from None
    return parse_users(text, path)
