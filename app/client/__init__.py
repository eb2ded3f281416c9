"""``runwarden tasks | runs | run | trigger | logs | stop | nodes | notify``: a client of a
daemon's API for people at a terminal and for scripts (``--json``).

Imported only when one of these commands runs: ``runwarden serve`` never loads httpx or
rich, so the daemon does not carry them.
"""
