"""The ``txpubsub`` command."""
