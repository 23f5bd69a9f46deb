"""Many connectors: the supervisor of one child process per connector, and the
in-process fleet of ``run-all --in-process``."""

from worker.fleet.child import Child, SupervisorMetrics, SupervisorOptions
from worker.fleet.in_process import InProcessFleet
from worker.fleet.process import run_fleet_process
from worker.fleet.supervisor import Supervisor

__all__ = [
    "Child",
    "InProcessFleet",
    "Supervisor",
    "SupervisorMetrics",
    "SupervisorOptions",
    "run_fleet_process",
]
