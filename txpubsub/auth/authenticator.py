"""The door-neutral authentication API: one per server, shared by every door.

A door asks ``authenticate(user, password)`` (a Deferred of the avatar, or
UnauthorizedLogin), ``certificate_user(name)`` for a verified TLS name, and
makes a ``Login`` per connection for the timeout and failure rules. The
Authenticator also owns the users file: ``reload()`` reads it again and
gives the hub a new authorizer, so connected clients keep their sessions and
get the new rules.
"""
from __future__ import annotations

import os
import stat
from typing import TYPE_CHECKING, Any

from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.auth.authorizer import RulesAuthorizer
from txpubsub.auth.cred import (
    CertificateIdentity,
    IPubSubUser,
    RunInThread,
    UserAvatar,
    make_portal,
)
from txpubsub.auth.throttle import MAX_CHECKS, LoginThrottle
from txpubsub.auth.users import UsersFileError, UserTable, load_users
from txpubsub.core.hub import Hub
from txpubsub.core.refusals import peer_host
from txpubsub.wire.errors import CloseReason, HubError

if TYPE_CHECKING:
    from txpubsub.auth.login import Login

AUTH_TIMEOUT = 10.0
FAILURE_DELAY = 1.0
MAX_FAILURES = 3


def _avatar(result: tuple[Any, ...]) -> UserAvatar:
    """The avatar of Portal.login's (interface, avatar, logout)."""
    avatar = result[1]
    assert isinstance(avatar, UserAvatar), avatar
    return avatar


class Authenticator:
    """Checks who a client is against the users file, through a twisted.cred Portal."""

    _log = Logger()

    def __init__(self, hub: Hub, table: UserTable, *, path: str | None = None,
                 timeout: float = AUTH_TIMEOUT, failure_delay: float = FAILURE_DELAY,
                 max_failures: int = MAX_FAILURES, max_checks: int = MAX_CHECKS,
                 run_in_thread: RunInThread = deferToThread) -> None:
        self.hub = hub
        self.path = path
        self.timeout = timeout
        self.failure_delay = failure_delay
        self.max_failures = max_failures
        self.table = table
        self.throttle = LoginThrottle(hub.clock, max_checks)
        self.logins: set[Login] = set()  # of the connected clients (line, RESP, WebSocket)
        self.portal = make_portal(lambda: self.table, run_in_thread)
        hub.authorizer = RulesAuthorizer(table)
        self._check_mode()

    def _check_mode(self) -> None:
        """Say so if other users of the machine may read or change the users
        file (as mosquitto does for its password file): the hashes are slow to
        attack, not impossible, and the rules are the server's security."""
        if self.path is None:
            return
        try:
            mode = stat.S_IMODE(os.stat(self.path).st_mode)
        except OSError:
            return
        if mode & 0o007:
            self._log.warn("users file {path} is open to other users of this machine (mode "
                           "{mode:04o}): chmod o-rwx {path}", path=self.path, mode=mode)

    @classmethod
    def from_file(cls, hub: Hub, path: str, **kwargs: Any) -> Authenticator:
        """Read ``path`` (UsersFileError if it cannot be used); take charge of the rules."""
        return cls(hub, load_users(path), path=path, **kwargs)

    @property
    def auth_required(self) -> bool:
        """No anonymous rules: a client must authenticate before anything else."""
        return self.table.anonymous is None

    def authenticate(self, user: str, password: str, address: str = "-") -> Deferred[UserAvatar]:
        """The user's avatar if the password is right; fails with UnauthorizedLogin.

        Raises HubError unavailable or rate-limited at once, checking nothing,
        when too many checks run or the client's address (``host:port`` as
        sessions give it) has failed too often (auth.throttle)."""
        host = peer_host(address)
        try:
            self.throttle.admit(host)
        except HubError as e:
            self.hub.counters.auth_refused += 1
            self.hub.refusals.refused(self._log, f"AUTH {e.code}", address,
                                      "{address}: AUTH refused unchecked: {why}", why=e.text)
            raise
        try:
            # A WebSocket client's JSON may carry lone surrogates: never an error here.
            d = self.portal.login(UsernamePassword(user.encode("utf-8", "surrogatepass"),
                                                   password.encode("utf-8", "surrogatepass")),
                                  None, IPubSubUser)
        except BaseException:
            self.throttle.done(host, failed=True)
            raise
        d.addBoth(self._checked, host)
        return d.addCallback(_avatar)

    def _checked(self, result: Any, host: str) -> Any:
        failed = isinstance(result, Failure) and result.check(UnauthorizedLogin) is not None
        self.throttle.done(host, failed)
        return result

    def certificate_user(self, name: str) -> UserAvatar | None:
        """The user a verified certificate name is (the same name in the users
        file), or None. Decided at once: the TLS handshake did the checking."""
        found: list[UserAvatar] = []
        d = self.portal.login(CertificateIdentity(name), None, IPubSubUser)
        d.addCallbacks(lambda result: found.append(result[1]),
                       lambda failure: failure.trap(UnauthorizedLogin))
        return found[0] if found else None

    def reload(self) -> str | None:
        """Read the users file again; None if done, else why the old rules stay."""
        if self.path is None:
            return None
        try:
            table = load_users(self.path)
        except UsersFileError as e:
            self._log.error("users file not reloaded, the old rules stay: {why}", why=str(e))
            return str(e)
        self.table = table
        self.hub.authorizer = authorizer = RulesAuthorizer(table)
        self._check_mode()
        clients = self.hub.clients()
        kicked = set()
        for client in clients:
            user, name = client.user, client.name
            if user is not None and user not in table.users:
                # As Redis's ACL DELUSER and NATS's reload: a user taken out of
                # the file is let go of (a password change keeps sessions).
                self._log.info("{client_id} was user {user}, no longer in the users file: "
                               "kicked", client_id=client.client_id, user=user)
                client.session.close(CloseReason.KICKED, f"user {user} was removed")
                kicked.add(client)
            elif name is not None and not authorizer.may_name(client, name):
                # A name taken before its user was added: the user's direct
                # messages must not go on reaching whoever holds it.
                self._log.info("{client_id} held {name}, now a user's name: kicked",
                               client_id=client.client_id, name=name)
                client.session.close(CloseReason.KICKED, f"{name} now belongs to a user")
                kicked.add(client)
        revoked = 0
        for client in clients:
            if client in kicked:
                continue
            for pattern in sorted(client.patterns):
                if not authorizer.may_subscribe(client, pattern):
                    # The new rules no longer cover it: the subscription goes,
                    # and the client is told as for an admin DROP.
                    try:
                        self.hub.unsubscribe(client, pattern)
                    except HubError:
                        continue
                    client.session.channel_dropped(pattern)
                    revoked += 1
        for login in list(self.logins):
            # Anonymous rules gone: anonymous clients must AUTH now (the timeout
            # counts from here); come: clients waiting to AUTH are let in.
            login.reconsider()
        self._log.info("users file {path} reloaded: {users} users, anonymous {anonymous}, "
                       "{revoked} subscriptions revoked", path=self.path,
                       users=len(table.users),
                       anonymous="rules" if table.anonymous is not None else "none",
                       revoked=revoked)
        return None
