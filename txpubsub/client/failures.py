"""Why a connection attempt failed, in words a user can act on.

A refused or unreachable server may come back, so it is worth retrying; a
TLS failure (an untrusted certificate, the wrong name, a refused client
certificate, no TLS at all on the other side) is the same on every attempt,
so it is ``final``.
"""
from __future__ import annotations

from dataclasses import dataclass

from twisted.internet import error
from twisted.python.failure import Failure

# Kinds of final (TLS) failure, for callers that want to add a hint.
UNTRUSTED = "untrusted"  # the server's certificate chain is not trusted
WRONG_NAME = "wrong-name"  # the certificate is for another name
NEEDS_CLIENT_CERT = "needs-client-cert"  # the server asks for a client certificate
CLIENT_CERT_REFUSED = "client-cert-refused"  # the server refused ours
NOT_TLS = "not-tls"  # the other side does not speak TLS
TLS = "tls"  # another TLS error


@dataclass(frozen=True)
class Why:
    """One failed attempt: what to tell the user, and whether retrying can help."""

    text: str
    final: bool = False
    kind: str = ""


def _openssl_reasons(value: BaseException) -> list[str]:
    # OpenSSL.SSL.Error carries [(library, function, reason), ...].
    args = value.args[0] if value.args and isinstance(value.args[0], list) else []
    return [str(entry[-1]) for entry in args if isinstance(entry, tuple) and entry]


def describe(reason: BaseException | Failure | None) -> Why:
    """Describe why a connection failed or closed before the server greeted us."""
    value = reason.value if isinstance(reason, Failure) else reason
    if value is None:
        return Why("the connection closed before the server said INFO")
    cause = getattr(value, "cause", None)  # ServerClosed: the transport's reason
    if cause is not None:
        return describe(cause)
    if type(value).__name__ == "VerificationError":  # service_identity's
        return Why("the server's certificate is not valid for the name asked for",
                   True, WRONG_NAME)
    if type(value).__module__.startswith("OpenSSL"):
        reasons = _openssl_reasons(value) or [str(value)]
        said = "; ".join(reasons)
        if any("certificate verify failed" in r for r in reasons):
            return Why(f"the server's certificate is not trusted ({said})", True, UNTRUSTED)
        if any("alert certificate required" in r for r in reasons):
            return Why(f"the server wants a client certificate ({said})", True,
                       NEEDS_CLIENT_CERT)
        if any("alert" in r and ("certificate" in r or "unknown ca" in r) for r in reasons):
            return Why(f"the server refused the client certificate ({said})", True,
                       CLIENT_CERT_REFUSED)
        if any(r in ("wrong version number", "packet length too long", "http request")
               for r in reasons):
            return Why(f"the server does not speak TLS there ({said})", True, NOT_TLS)
        return Why(f"TLS failed ({said})", True, TLS)
    if isinstance(value, error.ConnectionRefusedError):
        return Why("connection refused")
    if isinstance(value, error.DNSLookupError):
        return Why(f"unknown host ({str(value).rstrip('.')})")
    if isinstance(value, error.TimeoutError) or \
            type(value).__name__ in ("TimeoutError", "CancelledError"):
        return Why("no answer in time")
    if isinstance(value, error.ConnectionClosed):
        return Why("the connection closed before the server said INFO")
    if isinstance(value, FileNotFoundError) or getattr(value, "osError", None) == 2:
        return Why("no such socket")
    text = str(value).strip().rstrip(".")
    return Why(text or type(value).__name__)
