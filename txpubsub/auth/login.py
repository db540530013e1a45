"""One connection's way in: the auth timeout, the delay on each failure and
``BYE auth-failed`` on the last one (PROTOCOL.md, "Authentication").

Door-neutral: a door makes one Login per connection once the client is in
the hub, passes AUTH's arguments to ``attempt`` and replies with what the
Deferred gives; the Login closes the session itself (``auth-timeout``,
``auth-failed``) through the Session seam.
"""
from __future__ import annotations

from typing import Any, Callable

from twisted.cred.error import UnauthorizedLogin
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from txpubsub.auth.authenticator import Authenticator
from txpubsub.auth.cred import UserAvatar
from txpubsub.core.registry import ClientRecord
from txpubsub.wire.errors import CloseReason, HubError, shorten
from txpubsub.wire.names import check_name


def loggable(user: str) -> str:
    """A user as a client typed it, safe for a log line: a name as it is,
    anything else quoted, escaped and cut short (a "user" holding a newline
    would forge a log line; 64 KiB of one would flood the log)."""
    try:
        return check_name(user)
    except HubError:
        return shorten(ascii(user), 64)


class Login:
    """Who one client is, and the rules for getting in."""

    _log = Logger()

    def __init__(self, auth: Authenticator, client: ClientRecord,
                 gate: Callable[[bool], None] | None = None) -> None:
        self.auth = auth
        self.client = client
        # The door's: True lets only AUTH (and PING, HELP, QUIT) in, False all.
        self._gate = gate
        self.failures = 0
        self.pending = False  # an AUTH is being checked (or its failure delayed)
        self._timer: IDelayedCall | None = None
        self._delays: list[IDelayedCall] = []
        self._closed = False

    @property
    def authenticated(self) -> bool:
        """The client is a user of the file (AUTH, or its certificate)."""
        return self.client.user is not None

    @property
    def must_authenticate(self) -> bool:
        """Nothing but AUTH, PING, PONG, HELP and QUIT until it has authenticated."""
        return self.auth.auth_required and self.client.user is None

    def start(self, certificate_name: str | None = None) -> None:
        """The client is in the hub: a verified certificate naming a user makes
        it that user; otherwise, if it must authenticate, the door gates it and
        the timeout starts."""
        self.auth.logins.add(self)
        if certificate_name is not None:
            avatar = self.auth.certificate_user(certificate_name)
            if avatar is not None:
                self._become(avatar, "certificate")
                return
        self.reconsider()

    def reconsider(self) -> None:
        """Gate the client and run the timeout if it must authenticate now (the
        users file may have lost or gained its anonymous rules); else neither."""
        must = self.must_authenticate
        if self._gate is not None:
            self._gate(must)
        if not must:
            self.cancel_timer()
        elif self._timer is None and self.auth.timeout > 0:
            self._timer = self.auth.hub.clock.callLater(self.auth.timeout, self._too_slow)

    def reset(self) -> None:
        """The client is nobody again (RESP's RESET); a certificate's user stays."""
        if not self.client.name_locked:
            self.client.user = None
            self.reconsider()

    def attempt(self, user: str, password: str) -> Deferred[str]:
        """Check AUTH's user and password: fires with the user name, or fails
        with HubError auth-failed after the failure delay. On the last allowed
        failure the connection is closed (``BYE auth-failed``) instead and the
        Deferred fires with None. Raises HubError at once if the password
        cannot be checked now (forbidden, unavailable, rate-limited)."""
        if self.client.user is not None:
            raise HubError("forbidden", f"already authenticated as {self.client.user}")
        started = self.auth.hub.clock.seconds()
        # HubError unavailable or rate-limited here: refused unchecked, no failure.
        d = self.auth.authenticate(user, password, self.client.address)
        self.pending = True
        return d.addCallbacks(self._accepted, self._rejected, callbackArgs=(started,),
                              errbackArgs=(user, started))

    def _accepted(self, avatar: UserAvatar, started: float) -> Any:
        if avatar.name not in self.auth.table.users:
            # Taken out of the file (a reload) while its password was checked.
            return self._rejected(Failure(UnauthorizedLogin("no longer a user")), avatar.name,
                                  started)
        self.pending = False
        if self._closed:
            return avatar.name
        self._become(avatar, "password")
        return avatar.name

    def _become(self, avatar: UserAvatar, how: str) -> None:
        self.client.user = avatar.name
        self.cancel_timer()
        self._log.info("{client_id} from {address} authenticated as {user} by {how}",
                       client_id=self.client.client_id, address=self.client.address,
                       user=avatar.name, how=how)

    def _rejected(self, failure: Failure, user: str, started: float) -> Deferred[Any] | None:
        if not failure.check(UnauthorizedLogin):
            self._log.failure("checking a password failed", failure)
        self.failures += 1
        self.auth.hub.counters.auth_failures += 1
        self._log.warn("{client_id} from {address}: authentication as {user} failed "
                       "({failures} of {allowed})", client_id=self.client.client_id,
                       address=self.client.address, user=loggable(user),
                       failures=self.failures, allowed=self.auth.max_failures)
        if self._closed:
            self.pending = False
            return None  # gone meanwhile: no delay to wait, nobody to answer
        clock = self.auth.hub.clock
        # The delay counts from the AUTH, so the hashing time is part of it.
        wait = max(0.0, started + self.auth.failure_delay - clock.seconds())
        later: Deferred[Any] = Deferred()
        call = clock.callLater(wait, self._delayed, later)
        self._delays.append(call)
        return later

    def _delayed(self, later: Deferred[Any]) -> None:
        self._delays = [c for c in self._delays if c.active()]
        self.pending = False
        if self.failures >= self.auth.max_failures:
            self.close(CloseReason.AUTH_FAILED, f"{self.failures} failed attempts")
            later.callback(None)
            return
        later.errback(HubError("auth-failed", "wrong user or password"))

    def _too_slow(self) -> None:
        self._timer = None
        if self.must_authenticate:
            self.close(CloseReason.AUTH_TIMEOUT,
                       f"not authenticated within {self.auth.timeout:g} seconds")

    def close(self, reason: CloseReason, text: str) -> None:
        """Close the session with ``reason``."""
        self._closed = True
        self.client.session.close(reason, text)

    def cancel_timer(self) -> None:
        """No timeout any more (authenticated)."""
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def stop(self) -> None:
        """The connection is gone: no timer may fire for it."""
        self._closed = True
        self.auth.logins.discard(self)
        self.cancel_timer()
        for call in self._delays:
            if call.active():
                call.cancel()
        self._delays = []
