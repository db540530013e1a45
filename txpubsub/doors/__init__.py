"""The ways in: the session machinery every door shares, and one module per door."""
