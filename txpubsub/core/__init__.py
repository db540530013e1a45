"""The hub and what it owns: channels, subscriptions, clients, counters, and
the seams doors, stores and backplanes plug into. No sockets, no wire format."""
