"""The protocol's grammar, error codes, close reasons and encodings; no Twisted."""
