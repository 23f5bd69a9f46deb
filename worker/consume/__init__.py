"""``connector-fleet consume``: one stream consumer process (run several to scale)."""

from worker.consume.process import ConsumerProcess, run_consume_process
from worker.consume.request import ConsumeRequest

__all__ = ["ConsumeRequest", "ConsumerProcess", "run_consume_process"]
