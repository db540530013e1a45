"""Backplanes that share channels between servers (--redis)."""
