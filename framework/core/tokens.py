"""Owner tokens: who holds a lease or a permit, readable with ``redis-cli GET``."""

from __future__ import annotations

import os
import secrets
import socket


def new_owner_token() -> str:
    """``host:pid:random``: unique per holder, and says which process it is."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(6)}"
