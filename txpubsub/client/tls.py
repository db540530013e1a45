"""TLS settings for a client connection.

By default the server's certificate is checked against the system's trust
store and must be valid for the name connected to (as ``curl``,
``redis-cli --tls`` and ``nats`` do); a CA file replaces the system store;
``insecure`` turns the checks off, and only when asked.
"""
from __future__ import annotations

import re
from typing import Any

_PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


class TLSFileError(ValueError):
    """A certificate or key file that cannot be read or used."""


def _read(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise TLSFileError(f"cannot read {what} {path}: {e.strerror or e}") from None


def trust_from_file(path: str) -> Any:
    """A trust root holding every certificate in a PEM file."""
    from twisted.internet.ssl import Certificate, trustRootFromCertificates

    blocks = _PEM_CERT.findall(_read(path, "the CA file"))
    if not blocks:
        raise TLSFileError(f"no PEM certificate in the CA file {path}")
    try:
        return trustRootFromCertificates([Certificate.loadPEM(block) for block in blocks])
    except Exception as e:
        raise TLSFileError(f"cannot use the CA file {path}: {e}") from None


def client_certificate(cert: str, key: str | None = None) -> Any:
    """A PrivateCertificate from a certificate file and its key (default: the same file)."""
    from twisted.internet.ssl import PrivateCertificate

    data = _read(cert, "the client certificate")
    key_data = _read(key, "the client key") if key else data
    try:
        return PrivateCertificate.loadPEM(data + b"\n" + key_data)
    except Exception as e:
        raise TLSFileError(f"cannot use the client certificate {cert}: {e}") from None


def client_tls_options(hostname: str, ca: str | None = None, cert: str | None = None,
                       key: str | None = None, insecure: bool = False) -> Any:
    """Options for ``wrapClientTLS``: verify ``hostname`` against ``ca`` or the system store.

    Raises TLSFileError for a file that cannot be read or used.
    """
    from twisted.internet.ssl import CertificateOptions, optionsForClientTLS, platformTrust

    client = client_certificate(cert, key) if cert else None
    if insecure:
        if client is None:
            return CertificateOptions(verify=False)
        return CertificateOptions(privateKey=client.privateKey.original,
                                  certificate=client.original, verify=False)
    trust = trust_from_file(ca) if ca else platformTrust()
    return optionsForClientTLS(hostname, trustRoot=trust, clientCertificate=client)
