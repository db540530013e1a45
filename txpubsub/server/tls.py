"""TLS with client certificates: the ``mtls:`` listener, reloadable, and
client names read from certificates.

``ssl:`` (Twisted's own) serves TLS but cannot ask for client certificates
(twisted#6757). ``mtls:PORT:privateKey=KEY:certKey=CERT:caCerts=CA`` does:
a client must present a certificate signed by a CA in the ``caCerts`` file,
or its handshake fails. Its certificate files are read again on SIGHUP or
the admin ``RELOAD``: new connections get the new ones, live ones keep theirs.
"""
from __future__ import annotations

import re
import weakref
from typing import Any

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

_log = Logger()
_live: weakref.WeakSet[ReloadableTLS] = weakref.WeakSet()


def _certificates(path: str) -> list[Any]:
    pems = re.findall(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----",
                      FilePath(path).getContent(), flags=re.DOTALL)
    if not pems:
        raise ValueError(f"{path} holds no PEM certificate")
    return [ssl.Certificate.loadPEM(pem).original for pem in pems]


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableTLS:
    """Server TLS contexts that require a client certificate from ``ca_certs``."""

    def __init__(self, private_key: str, cert: str, ca_certs: str) -> None:
        self.paths = (private_key, cert, ca_certs)
        self._context = self._load()
        _live.add(self)

    def _load(self) -> SSL.Context:
        private_key, cert, ca_certs = self.paths
        chain = _certificates(cert)
        # As Twisted's ssl: parser does: the first certificate with the key.
        pair = ssl.PrivateCertificate.loadPEM(
            FilePath(cert).getContent() + b"\n" + FilePath(private_key).getContent())
        options = ssl.CertificateOptions(
            privateKey=pair.privateKey.original,
            certificate=pair.original,
            extraCertChain=chain[1:] or None,
            verify=True,
            caCerts=_certificates(ca_certs),
            requireCertificate=True,
        )
        return options.getContext()

    def reload(self) -> None:
        """Read the files again; on any error keep the old context and raise."""
        self._context = self._load()

    def serverConnectionForTLS(self, tlsProtocol: object) -> SSL.Connection:
        return SSL.Connection(self._context, None)


def reload_all() -> tuple[int, list[str]]:
    """Reload every live mtls: listener; returns (how many, errors)."""
    done, errors = 0, []
    for creator in list(_live):
        try:
            creator.reload()
            done += 1
        except Exception as e:
            errors.append(f"{creator.paths[1]}: {e}")
            _log.error("certificate reload failed for {cert}: {error}; keeping the old one",
                       cert=creator.paths[1], error=e)
    return done, errors


def mtls_endpoint(reactor: Any, port: str, privateKey: str = "server.pem",
                  certKey: str | None = None, caCerts: str | None = None,
                  interface: str = "", backlog: str = "50") -> SSL4ServerEndpoint:
    """The endpoint behind an ``mtls:`` string (see the module docstring)."""
    if caCerts is None:
        raise ValueError("mtls: needs caCerts=<file of CA certificates for client certificates>")
    creator = ReloadableTLS(privateKey, certKey or privateKey, caCerts)
    return SSL4ServerEndpoint(reactor, int(port), creator, backlog=int(backlog),
                              interface=interface)


def certificate_name(x509: Any, source: str) -> str | None:
    """The client name a certificate carries: its CN, or its first SAN
    (DNS name, e-mail or URI, in that order); None if it has none."""
    from cryptography import x509 as cx
    from cryptography.x509.oid import NameOID

    cert = x509.to_cryptography()
    if source == "cn":
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value) if names else None
    try:
        san = cert.extensions.get_extension_for_class(cx.SubjectAlternativeName).value
    except cx.ExtensionNotFound:
        return None
    for kind in (cx.DNSName, cx.RFC822Name, cx.UniformResourceIdentifier):
        values = san.get_values_for_type(kind)
        if values:
            return str(values[0])
    return None
