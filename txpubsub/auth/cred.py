"""The twisted.cred pieces: a checker for password hashes, a checker for
TLS-certificate identities, and a realm whose avatar carries a user's rules.

Both checkers read the current UserTable through a callable, so a reload of
the users file is seen by the next login without rebuilding the Portal.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import ICredentials, IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.threads import deferToThread
from zope.interface import Attribute, Interface, implementer

from txpubsub.auth.passwords import hash_password, verify_password
from txpubsub.auth.rules import Rules
from txpubsub.auth.users import UserTable

_decoy: list[str] = []


def _decoy_hash() -> str:
    """A hash at the default cost, made once (on the checking thread)."""
    if not _decoy:
        _decoy.append(hash_password("not a password"))
    return _decoy[0]


def _check(stored: str | None, decoy: str | None, password: str) -> bool:
    """Whether ``password`` is the one ``stored`` was made from. Without a
    stored hash (no such user, or a certificate-only one) the password is
    checked against ``decoy`` (another user's hash, or a default one) and
    refused, so that an unknown user costs the time of a wrong password (no
    user enumeration by timing). Runs on a thread: nothing slow on the reactor."""
    if stored is None:
        verify_password(decoy or _decoy_hash(), password)
        return False
    return verify_password(stored, password)

RunInThread = Callable[..., "Deferred[Any]"]


class ICertificateIdentity(ICredentials):
    """Credentials: the name a client's verified TLS certificate carries."""

    name = Attribute("the certificate's name (CN or SAN, per --tls-name-from)")


@implementer(ICertificateIdentity)
class CertificateIdentity:
    """A verified certificate's name (the TLS handshake checked it against the CA)."""

    def __init__(self, name: str) -> None:
        self.name = name


class IPubSubUser(Interface):
    """The avatar: who a client is and what it may do."""

    name = Attribute("the user name")
    rules = Attribute("the user's Rules at login time")


@implementer(IPubSubUser)
class UserAvatar:
    """A logged-in user: its name and its rules when it logged in (the hub's
    authorizer always asks the current users file, so a reload applies)."""

    def __init__(self, name: str, rules: Rules) -> None:
        self.name = name
        self.rules = rules

    def __repr__(self) -> str:
        return f"<UserAvatar {self.name}>"


@implementer(ICredentialsChecker)
class PasswordHashChecker:
    """Checks a user name and password against the users file's scrypt hashes.

    scrypt is slow on purpose (about 0.1 s at the default parameters), so the
    check runs in a thread (``run_in_thread``, deferToThread by default)
    and never blocks the reactor.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, table: Callable[[], UserTable],
                 run_in_thread: RunInThread = deferToThread) -> None:
        self._table = table
        self._run = run_in_thread

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        username = credentials.username
        if isinstance(username, bytes):
            username = username.decode("utf-8", "replace")
        password = credentials.password
        if isinstance(password, bytes):
            password = password.decode("utf-8", "replace")
        table = self._table()
        user = table.users.get(username)
        stored = user.password if user is not None else None
        d = self._run(_check, stored, table.decoy, password)

        def decided(ok: bool) -> bytes:
            if ok:
                return str(username).encode()  # avatar ids are bytes in twisted.cred
            raise UnauthorizedLogin("wrong user or password")

        return d.addCallback(decided)


@implementer(ICredentialsChecker)
class CertificateChecker:
    """A verified certificate whose name is a user of the file is that user."""

    credentialInterfaces = (ICertificateIdentity,)

    def __init__(self, table: Callable[[], UserTable]) -> None:
        self._table = table

    def requestAvatarId(self, credentials: Any) -> Deferred[bytes | tuple[()]]:
        if credentials.name in self._table().users:
            return succeed(str(credentials.name).encode())
        return fail(UnauthorizedLogin(f"no user {credentials.name} in the users file"))


@implementer(IRealm)
class UsersRealm:
    """Gives each logged-in user an avatar carrying its current rules."""

    def __init__(self, table: Callable[[], UserTable]) -> None:
        self._table = table

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> tuple[Any, Any, Any]:
        if IPubSubUser not in interfaces:
            raise NotImplementedError("txpubsub users are IPubSubUser avatars")
        name = avatarId.decode() if isinstance(avatarId, bytes) else str(avatarId)
        avatar = UserAvatar(name, self._table().rules_for(name))
        return IPubSubUser, avatar, lambda: None


def make_portal(table: Callable[[], UserTable],
                run_in_thread: RunInThread = deferToThread) -> Portal:
    """A Portal over the users file: passwords and certificate identities."""
    return Portal(UsersRealm(table), [PasswordHashChecker(table, run_in_thread),
                                      CertificateChecker(table)])
