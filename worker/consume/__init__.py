"""``connector-fleet consume``: one stream consumer process, or N of them
(``--processes N``) under a supervisor."""

from worker.consume.process import ConsumerProcess, run_consume_process
from worker.consume.processes import ConsumerProcesses, ProcessesPlan, run_consume_processes
from worker.consume.request import ConsumeRequest

__all__ = ["ConsumeRequest", "ConsumerProcess", "ConsumerProcesses", "ProcessesPlan",
           "run_consume_process", "run_consume_processes"]
