"""One connector: the worker that holds its lease and polls on schedule, and the
``connector-run`` process around it."""

from worker.connector.process import run_connector_process
from worker.connector.worker import ConnectorWorker

__all__ = ["ConnectorWorker", "run_connector_process"]
