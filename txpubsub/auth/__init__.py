"""Who may do what: users, passwords, rules (``--users FILE``, docs/auth.md).

``passwords`` is the standard library only (the ``txpubsub passwd`` command
loads it without the server); ``rules`` decides publish and subscribe
permissions; ``users`` reads the users file; ``cred`` holds the twisted.cred
pieces (checkers and realm); ``authenticator`` is the door-neutral API a door
calls (``Authenticator.authenticate(user, password)``), ``login`` one
connection's way in (timeout, failure delay, third failure) and
``authorizer`` the hub's Authorizer for the rules. This package imports
``core`` and ``wire``, never a door or the server.
"""
