"""Read-only device capabilities: ``device.telemetry_collect`` (the device's history
over a window of a stream, plus one fresh reading asked of the device) and
``network.topology_map`` (the mesh, breadth first from one device).

Both change nothing, so their rollback is ``none`` (a failed call is audited and
alerted, nothing is undone) and they take no device permit. Both are bounded: the
stream scan reads at most ``MAX_SCAN`` entries in pages, the map at most
``maxDevices`` devices, ``TOPOLOGY_CONCURRENCY`` requests at once; a neighbour id a
device reports is checked like any device id before it is addressed."""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from framework.consuming import CallContext, CallPolicy, CapabilitySpec
from framework.core import TransientSourceError
from providers.devices.capabilities.device_link import DeviceLink, device_scope, state_of
from providers.devices.capabilities.device_params import (
    TelemetryCollectParams,
    TopologyMapParams,
)
from providers.devices.capabilities.params import RebootParams, parse_params
from providers.devices.channel_topics import DEVICE_ID

TELEMETRY_ID, TOPOLOGY_ID = "device.telemetry_collect", "network.topology_map"
MAX_SCAN, PAGE = 100_000, 1000
TOPOLOGY_CONCURRENCY = 32
POLICY = CallPolicy(timeout_s=320.0, max_retries=1)


class ReadingCapabilities:
    """``streams``: the streams ``telemetry_collect`` may read (event data names one:
    it may not name any other key)."""

    def __init__(self, link: DeviceLink, *, streams: Iterable[str]) -> None:
        self._link = link
        self._streams = frozenset(streams)

    def specs(self) -> list[CapabilitySpec]:
        return [
            CapabilitySpec(TELEMETRY_ID, "1.0.0", self.collect_telemetry,
                           description="A device's readings over a window of a stream",
                           read_state=self.read_state, policy=POLICY,
                           breaker_scope=device_scope),
            CapabilitySpec(TOPOLOGY_ID, "1.0.0", self.map_topology,
                           description="The device mesh, breadth first from one device",
                           read_state=self.read_state, policy=POLICY,
                           breaker_scope=device_scope),
        ]

    async def read_state(self, params: Mapping[str, Any],
                         context: CallContext) -> Mapping[str, Any]:
        device_id = parse_params(RebootParams, "device", {"deviceId": params.get("deviceId")}
                                 ).device_id
        settings = await self._link.settings(device_id, context.logger)
        return state_of(device_id, settings, {"buffered": (settings or {}).get("buffered")})

    async def collect_telemetry(self, params: Mapping[str, Any],
                                context: CallContext) -> dict[str, Any]:
        call = parse_params(TelemetryCollectParams, TELEMETRY_ID, params)
        if call.stream not in self._streams:
            raise ValueError(f"{TELEMETRY_ID} params.stream: {call.stream!r} is not one of "
                             f"the telemetry streams allowed ({sorted(self._streams)})")
        fresh = await self._link.command(call.device_id, "telemetry_read", {},
                                         timeout_s=call.timeout_s)
        since_ms = int((context.clock.time() - call.window_s) * 1000)
        values, scanned = await _history(context, call, since_ms)
        summary = _summary(values)
        context.logger.info("device_telemetry_collected", device_id=call.device_id,
                            count=len(values), scanned=scanned)
        return {"deviceId": call.device_id, "windowS": call.window_s, "stream": call.stream,
                "fresh": dict(fresh), "scanned": scanned,
                "truncated": len(values) >= call.max_readings or scanned >= MAX_SCAN,
                **summary}

    async def map_topology(self, params: Mapping[str, Any],
                           context: CallContext) -> dict[str, Any]:
        call = parse_params(TopologyMapParams, TOPOLOGY_ID, params)
        # The root must answer: a map from a silent device is a failed call.
        root = await self._link.command(call.device_id, "topology", {}, timeout_s=call.timeout_s)
        mesh = _Mesh(call)
        level = mesh.add(call.device_id, root, depth=0)
        limit = asyncio.Semaphore(TOPOLOGY_CONCURRENCY)
        for depth in range(1, call.max_depth):  # the last level is listed, not asked
            if not level:
                break
            answers = await asyncio.gather(*(self._neighbours(limit, device, call)
                                             for device in level))
            level = [found for device, answer in zip(level, answers, strict=True)
                     for found in mesh.add(device, answer, depth)]
        context.logger.info("device_topology_mapped", device_id=call.device_id,
                            nodes=len(mesh.nodes), unreachable=len(mesh.unreachable))
        return mesh.result()

    async def _neighbours(self, limit: asyncio.Semaphore, device_id: str,
                          call: TopologyMapParams) -> Mapping[str, Any] | None:
        async with limit:
            try:
                return await self._link.command(device_id, "topology", {},
                                                timeout_s=call.timeout_s)
            except TransientSourceError:
                return None


class _Mesh:
    def __init__(self, call: TopologyMapParams) -> None:
        self._call = call
        self.nodes: dict[str, int] = {call.device_id: 0}
        self.edges: set[tuple[str, str, int | None]] = set()
        self.unreachable: list[str] = []
        self.invalid = 0
        self.truncated = False

    def add(self, device_id: str, answer: Mapping[str, Any] | None, depth: int) -> list[str]:
        """The devices first seen in ``device_id``'s answer (the next level)."""
        if answer is None:
            self.unreachable.append(device_id)
            return []
        found: list[str] = []
        neighbours = answer.get("neighbours")
        for neighbour in neighbours if isinstance(neighbours, list) else []:
            other = neighbour.get("deviceId") if isinstance(neighbour, dict) else None
            if not isinstance(other, str) or DEVICE_ID.fullmatch(other) is None:
                self.invalid += 1
                continue
            rssi = neighbour.get("rssi")
            self.edges.add((*sorted((device_id, other)),  # type: ignore[arg-type]
                            rssi if isinstance(rssi, int) else None))
            if other not in self.nodes:
                if len(self.nodes) >= self._call.max_devices:
                    self.truncated = True
                    continue
                self.nodes[other] = depth + 1
                found.append(other)
        return found

    def result(self) -> dict[str, Any]:
        return {"root": self._call.device_id,
                "nodes": [{"deviceId": node, "depth": depth}
                          for node, depth in self.nodes.items()],
                "edges": [{"a": a, "b": b, "rssi": rssi} for a, b, rssi in sorted(
                    self.edges, key=lambda edge: (edge[0], edge[1]))],
                "unreachable": sorted(self.unreachable), "invalidNeighbours": self.invalid,
                "truncated": self.truncated,
                "complete": not self.unreachable and not self.invalid and not self.truncated}


async def _history(context: CallContext, call: TelemetryCollectParams,
                   since_ms: int) -> tuple[list[float], int]:
    """The device's numeric readings (not heartbeats) in the stream since
    ``since_ms``, oldest first; how many entries were read."""
    values: list[float] = []
    start, scanned = f"{max(since_ms, 0)}-0", 0
    while scanned < MAX_SCAN and len(values) < call.max_readings:
        # Raw bytes (whatever the client decodes): an entry that is not UTF-8 is
        # another producer's, skipped, not a failed collection.
        page = await context.redis.execute_command(  # type: ignore[no-untyped-call]
            "XRANGE", call.stream, start, "+", "COUNT", PAGE, NEVER_DECODE=True) or []
        for _entry_id, fields in page:
            value = _reading_of(fields or {}, call.device_id)
            if value is not None and len(values) < call.max_readings:
                values.append(value)
        scanned += len(page)
        if len(page) < PAGE:
            break
        start = "(" + _text(page[-1][0])
    return values, scanned


def _reading_of(fields: Mapping[Any, Any], device_id: str) -> float | None:
    raw = fields.get(b"payload")
    try:
        payload = orjson.loads(raw) if raw is not None else None
    except orjson.JSONDecodeError:
        return None  # another producer's entry: not a reading
    if not isinstance(payload, dict) or payload.get("nodeId") != device_id:
        return None
    value = payload.get("value")
    metadata = payload.get("metadata")
    if isinstance(metadata, dict) and metadata.get("kind") == "heartbeat":
        return None
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
        else None


def _summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"count": 0, "min": None, "max": None, "mean": None, "last": None}
    return {"count": len(values), "min": min(values), "max": max(values),
            "mean": round(statistics.fmean(values), 6), "last": values[-1]}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
