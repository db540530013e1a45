"""Who a connection is, from what its TLS certificate carries."""
from __future__ import annotations

from typing import Any


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
