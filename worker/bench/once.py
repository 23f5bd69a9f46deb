"""One run of one benchmark, in the process ``worker.bench.repeat`` started for it:
``python -m worker.bench.once KIND PARAMS_JSON`` prints the run's rows as one JSON
line (the last line of stdout)."""

from __future__ import annotations

import importlib
import signal
import sys
from collections.abc import Callable

import orjson

from framework.core import configure_logging
from worker.bench.stats import Row

# Each benchmark's module and its one-run function (params in, rows out).
MEASURES = {
    "publish": "worker.bench.publish",
    "consume": "worker.bench.consume",
    "fleet": "worker.bench.fleet",
    "webhook": "worker.bench.webhook",
    "scale": "worker.bench.scale",
    "sources": "worker.bench.sources",
    "field": "worker.bench.field",
    "devices": "worker.bench.devices",
}


def run_once(kind: str, params: Row) -> list[Row]:
    if kind not in MEASURES:
        raise ValueError(f"unknown bench {kind!r} (known: {', '.join(MEASURES)})")
    measure: Callable[[Row], list[Row]] = importlib.import_module(MEASURES[kind]).measure
    return measure(params)


def main(argv: list[str]) -> int:
    configure_logging("WARNING")
    # SIGTERM (the run took too long) unwinds, so the run's workers and Redis stop too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(f"bench {argv[0]}: stopped by SIGTERM"))
    rows = run_once(argv[0], orjson.loads(argv[1]))
    print(orjson.dumps(rows).decode(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
