"""Durable history stores (memory, the default, lives in txpubsub.core.store)."""
