"""The processes and the command lines of the fleet.

``runtime`` (the ``Service`` each process runs, ``run_service``, the ``Runtime``
dependencies) carries ``connector`` (``connector-run``), ``fleet`` (``run-all``:
supervisor or in-process) and ``consume`` (a stream consumer). ``ops`` is what
operators see (status, health, the ops HTTP API); ``cli`` parses the command
lines and calls in; ``bench`` holds the benchmarks."""
