"""TLS with client certificates: the ``mtls:`` listener, reloadable.

``ssl:`` (Twisted's own) serves TLS but cannot ask for client certificates
(twisted#6757). ``mtls:PORT:privateKey=KEY:certKey=CERT:caCerts=CA`` does:
a client must present a certificate signed by a CA in the ``caCerts`` file,
or its handshake fails. Its certificate files are read again on SIGHUP or
the admin ``RELOAD`` (``reload_endpoints``, given the listeners' endpoints):
new connections get the new ones, live ones keep theirs.
"""
from __future__ import annotations

import re
from typing import Any

from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.endpoints import SSL4ServerEndpoint
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from twisted.python.filepath import FilePath
from zope.interface import implementer

_log = Logger()


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


class MutualTLSServerEndpoint(SSL4ServerEndpoint):
    """An SSL4ServerEndpoint whose certificates can be read again (``tls``)."""

    def __init__(self, reactor: Any, port: int, tls: ReloadableTLS, backlog: int = 50,
                 interface: str = "") -> None:
        super().__init__(reactor, port, tls, backlog=backlog, interface=interface)
        self.tls = tls


def reload_endpoints(endpoints: list[Any]) -> tuple[int, list[str]]:
    """Reload the certificates of every mtls: endpoint among ``endpoints``;
    returns (how many, errors)."""
    done, errors = 0, []
    for endpoint in endpoints:
        creator = getattr(endpoint, "tls", None)
        if not isinstance(creator, ReloadableTLS):
            continue
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
                  interface: str = "", backlog: str = "50") -> MutualTLSServerEndpoint:
    """The endpoint behind an ``mtls:`` string (see the module docstring)."""
    if caCerts is None:
        raise ValueError("mtls: needs caCerts=<file of CA certificates for client certificates>")
    creator = ReloadableTLS(privateKey, certKey or privateKey, caCerts)
    return MutualTLSServerEndpoint(reactor, int(port), creator, backlog=int(backlog),
                                   interface=interface)
