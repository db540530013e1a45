"""txpubsub: a publish/subscribe message server on Twisted."""

__version__ = "0.1.0"
