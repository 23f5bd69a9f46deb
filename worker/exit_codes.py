"""Named exit codes (sysexits.h values where one fits)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1  # an unexpected error; the traceback is logged
    FORCED = 3  # stopped by a second signal: children were killed without draining
    USAGE = 64  # bad command line
    UNAVAILABLE = 69  # Redis could not be reached or started (--once: within its deadline)
    POLL_FAILED = 74  # --once: the poll failed, or every item of it failed; the log says why
    LEASE_HELD = 75  # --once while another instance holds the lease (try again later)
    CONFIG = 78  # invalid configuration, unknown connector or type
