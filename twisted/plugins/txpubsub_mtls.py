"""The ``mtls:`` server endpoint string (TLS that requires client certificates).

Kept lazy: plugin discovery imports this file, so txpubsub.server.tls (and
pyOpenSSL) is imported only when an mtls: string is parsed.
"""
from twisted.internet.interfaces import IStreamServerEndpointStringParser
from twisted.plugin import IPlugin
from zope.interface import implementer


@implementer(IPlugin, IStreamServerEndpointStringParser)
class _MutualTLSParser:
    prefix = "mtls"

    def parseStreamServer(self, reactor, *args, **kwargs):
        from txpubsub.server.tls import mtls_endpoint

        return mtls_endpoint(reactor, *args, **kwargs)


mtls = _MutualTLSParser()
