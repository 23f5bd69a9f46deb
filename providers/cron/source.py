"""The ``cron-trigger`` connector: one event per tick of a cron expression.

A tick's time (UTC, ISO-8601) is its item id and its dedupe key, and the last tick
fired is the position saved with it in the fenced append: a tick is in the stream
exactly once, whichever instance held the lease and however often it restarted.

A tick that could not fire on time (no instance held the lease, Redis refused the
commit) fires late when it is less than ``misfireGraceMs`` old (60 s by default:
a failover or a restart loses no tick). Older missed ticks follow ``catchUp`` on
start: ``none`` skips them, ``last`` fires the latest one, ``all`` fires each of
them; at most ``catchUpMax`` fire, the latest kept. A connector with no tick
saved yet counts from its start.

providerConfig: ``expression`` (five fields, or six with seconds), ``timezone``
(IANA name the expression is read in; default UTC), ``payload`` (the event's
value), ``catchUp``, ``catchUpMax``, ``misfireGraceMs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

from framework.core import Clock, Logger
from framework.polling import (
    Batch,
    ConnectorConfig,
    ConnectorContext,
    DedupeWindow,
    PollingConnector,
    PushConnector,
    PushParts,
    parse_provider_config,
    source_event,
)

LAST_TICK = "lastTick"


class CronConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=True)

    expression: str
    timezone: str = "UTC"
    payload: Any = None
    catch_up: Literal["none", "last", "all"] = "none"
    catch_up_max: int = Field(100, ge=1, le=10_000)
    misfire_grace_ms: int = Field(60_000, ge=0)

    @field_validator("expression")
    @classmethod
    def _valid_expression(cls, expression: str) -> str:
        if not croniter.is_valid(expression):
            raise ValueError(f"not a cron expression: {expression!r}")
        return expression

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, timezone: str) -> str:
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown IANA timezone: {timezone!r}") from None
        return timezone


class CronSource:
    """A :class:`~framework.polling.PushSource` of ticks; a message is a tick's time."""

    def __init__(self, settings: CronConfig, clock: Clock, logger: Logger, *,
                 connector: str) -> None:
        self._settings = settings
        self._clock = clock
        self._log = logger
        self._zone = ZoneInfo(settings.timezone)
        self._connector = connector
        self._last: datetime | None = None
        self._missed: list[datetime] = []

    async def start(self, positions: Mapping[str, str]) -> None:
        now = self._now()
        saved = positions.get(LAST_TICK)
        self._last = datetime.fromisoformat(saved) if saved else now
        settings = self._settings
        missed = self._ticks_between(self._last, now, limit=settings.catch_up_max + 1)
        # A tick within the grace period is late, not missed (a failover, a restart):
        # it fires whatever the policy.
        grace_start = now - timedelta(milliseconds=settings.misfire_grace_ms)
        late = [tick for tick in missed if tick > grace_start]
        older = missed[: len(missed) - len(late)]
        kept = {"none": [], "last": older[-1:], "all": older}[settings.catch_up]
        self._missed = (kept + late)[-settings.catch_up_max:]
        if older:
            self._log.warning("cron_ticks_missed", since=self._last.isoformat(),
                              policy=settings.catch_up, firing=len(self._missed),
                              skipped=("more than " if len(missed) > settings.catch_up_max
                                       else "") + str(len(missed) - len(self._missed)))
        if not self._missed:
            # Count from now: the skipped ticks are not fired on a later start either.
            self._last = max(self._last, now)

    async def receive(self, max_messages: int, wait_s: float) -> Batch[datetime]:
        due = self._missed[:max_messages] or self._ticks_between(self._last, self._now())
        if not due:
            await self._clock.sleep(min(wait_s, self._seconds_to_next_tick()))
            due = self._ticks_between(self._last, self._now())
        due = due[:max_messages]
        if not due:
            return Batch()
        self._missed = self._missed[len(due):] if self._missed else []
        self._last = due[-1]
        return Batch(due, {LAST_TICK: due[-1].isoformat()})

    async def acknowledge(self, batch: Batch[datetime]) -> None:
        """Nothing to tell: the tick's position was saved with it."""

    async def stop(self) -> None:
        self._missed = []

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.time(), UTC)

    def _ticks_between(self, after: datetime | None, until: datetime, *,
                       limit: int = 1000) -> list[datetime]:
        """The latest ``limit`` ticks in (after, until], oldest first, in UTC. Walked
        back from ``until``, so a long outage of an every-second schedule costs
        ``limit`` steps, not one per missed tick."""
        if after is None:
            return []
        # Ticks fall on whole seconds: every tick <= until is before this.
        start = until.replace(microsecond=0) + timedelta(seconds=1)
        ticks = croniter(self._settings.expression, start.astimezone(self._zone))
        found: list[datetime] = []
        while len(found) < limit and (tick := ticks.get_prev(datetime)) > after:
            found.append(tick.astimezone(UTC))
        found.reverse()
        return found

    def _seconds_to_next_tick(self) -> float:
        start = (self._last or self._now()).astimezone(self._zone)
        tick: datetime = croniter(self._settings.expression, start).get_next(datetime)
        return max(0.0, (tick - self._now()).total_seconds())

    def event(self, tick: datetime) -> dict[str, Any]:
        fired = self._now()
        return source_event(
            source="cron", value=self._settings.payload, node_id=self._connector,
            timestamp=tick,
            metadata={"expression": self._settings.expression,
                      "timezone": self._settings.timezone,
                      "scheduledAt": tick.isoformat(), "firedAt": fired.isoformat(),
                      "lateMs": round((fired - tick).total_seconds() * 1000)})


def create_cron_connector(config: ConnectorConfig, context: ConnectorContext) -> PollingConnector:
    settings = parse_provider_config(CronConfig, config)
    source = CronSource(settings, context.clock, context.logger, connector=config.name)
    parts = PushParts(source=source, item_id=_tick_id, transformer=source.event,
                      raw=lambda tick: _tick_id(tick).encode(), dedupe_key=_tick_id,
                      window=DedupeWindow(ms=7 * 24 * 3600 * 1000, max_keys=10_000))
    return PushConnector(config=config, parts=parts, store=context.store, clock=context.clock,
                         logger=context.logger)


def _tick_id(tick: datetime) -> str:
    return tick.astimezone(UTC).isoformat()
