"""The polling connector: fetch -> detect changes -> transform -> publish + save state.

:class:`UniversalPollingConnector` composes the parts a provider supplies
(:class:`SourceParts`: a fetcher, an item-id function, a change detector, a
transformer) with the
framework's :class:`~framework.polling.state.StateStore`. One bad item is counted in
``failed`` and logged with its id; it never stops the others.

A source that pages gives a *page fetcher* instead: an async generator that
yields one :class:`FetchResult` per page. Each page is published and its
cursors saved in one atomic commit before the next page is pulled, so a
failure at page k keeps pages < k (and the cursor after them) and nothing of
page k: the next poll resumes from there, without duplicates.

Bounds: a poll has a deadline (``pollTimeoutMs``, see
:attr:`~framework.polling.config.ConnectorConfig.poll_deadline_ms`) and ends
in :class:`~framework.core.errors.PollTimeoutError` past it, keeping what it
committed. It never holds the event loop for long, whatever its size: items are
diffed and transformed in batches (:mod:`framework.polling.diff`), yielding to the
loop once about 10 ms are spent, and released as they go, so the lease keeps being
renewed during a poll of 100,000 items.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from framework.core.errors import PollTimeoutError
from framework.core.logs import Logger
from framework.polling.config import ConnectorConfig
from framework.polling.diff import Differ
from framework.polling.state import ConnectorState, StateStore
from framework.polling.versions import content_version as content_version  # re-exported

TProvider = TypeVar("TProvider")
TRaw = TypeVar("TRaw")
TSignal = TypeVar("TSignal")


@dataclass(frozen=True, slots=True)
class PollSummary:
    """What one poll did. ``removed``: ids pruned because the source dropped them."""

    fetched: int = 0
    published: int = 0
    skipped_unchanged: int = 0
    failed: int = 0
    removed: int = 0
    not_modified: bool = False
    pages: int = 1

    def __add__(self, other: PollSummary) -> PollSummary:
        return PollSummary(
            fetched=self.fetched + other.fetched,
            published=self.published + other.published,
            skipped_unchanged=self.skipped_unchanged + other.skipped_unchanged,
            failed=self.failed + other.failed,
            removed=self.removed + other.removed,
            not_modified=self.not_modified and other.not_modified,
            pages=self.pages + other.pages,
        )

    @property
    def all_items_failed(self) -> bool:
        """Items came and not one of them got through: the connector is degraded even
        though the poll itself succeeded."""
        return self.failed > 0 and self.published == 0 and self.skipped_unchanged == 0


class PollingConnector(Protocol):
    """What the worker runs: one poll at a time, then ``aclose`` once."""

    @property
    def name(self) -> str: ...

    async def poll(self) -> PollSummary: ...

    async def aclose(self) -> None: ...


@dataclass(frozen=True)
class FetchResult(Generic[TRaw]):
    """What a fetcher returns.

    ``complete``: the items are the source's whole current set, so ids missing
    from it are pruned from the state. Incremental fetchers (cursors) say False.
    A page fetcher says it on its last page only: the pages together were the
    whole set.
    ``etag`` / ``last_modified`` / ``cursors``: the values to save with this
    poll (for a page: the cursor that is safe to resume from after it).

    ``items`` are handed over to the poll: a list is emptied as it is diffed (each
    item replaced by None), so that a poll's items are freed a batch at a time, not
    all at once at its end. A fetcher that needs its items afterwards gives a copy
    (or a tuple, which is left as it is).
    """

    items: Sequence[TRaw] = ()
    complete: bool = True
    not_modified: bool = False
    etag: str | None = None
    last_modified: str | None = None
    cursors: Mapping[str, str] = field(default_factory=dict)


Fetcher = Callable[[TProvider, ConnectorState], Awaitable[FetchResult[TRaw]]]
PageFetcher = Callable[[TProvider, ConnectorState], AsyncIterator[FetchResult[TRaw]]]


@dataclass(frozen=True)
class SourceParts(Generic[TProvider, TRaw, TSignal]):
    """What a source supplies to the polling loop: the client it calls (handed to the
    fetcher), how it fetches (``fetcher`` for one answer, ``page_fetcher`` for pages:
    exactly one), and how an item is identified, versioned and made a signal."""

    provider: TProvider
    item_id: Callable[[TRaw], str]
    transformer: Callable[[TRaw], TSignal]
    fetcher: Fetcher[TProvider, TRaw] | None = None
    page_fetcher: PageFetcher[TProvider, TRaw] | None = None
    change_detector: Callable[[TRaw], str] = content_version

    def __post_init__(self) -> None:
        if (self.fetcher is None) == (self.page_fetcher is None):
            raise TypeError("give exactly one of fetcher= and page_fetcher=")


class UniversalPollingConnector(Generic[TProvider, TRaw, TSignal]):
    def __init__(
        self,
        *,
        config: ConnectorConfig,
        parts: SourceParts[TProvider, TRaw, TSignal],
        store: StateStore,
        logger: Logger,
        on_close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.config = config
        self.provider = parts.provider
        self._fetcher = parts.fetcher
        self._page_fetcher = parts.page_fetcher
        self._differ = Differ(item_id=parts.item_id, version=parts.change_detector,
                              transformer=parts.transformer, log=logger)
        self._store = store
        self._log = logger
        self._on_close = on_close

    @property
    def name(self) -> str:
        return self.config.name

    async def poll(self) -> PollSummary:
        """One poll within the connector's poll deadline."""
        deadline_ms = self.config.poll_deadline_ms
        deadline = asyncio.timeout(deadline_ms / 1000)
        try:
            async with deadline:
                return await self._poll()
        except TimeoutError:
            if not deadline.expired():
                raise
            raise PollTimeoutError(
                f"the poll did not finish within pollTimeoutMs={deadline_ms} and was "
                "stopped (what it committed before stays)", connector=self.name) from None

    async def _poll(self) -> PollSummary:
        state = await self._store.load()
        if self._fetcher is None:
            return await self._poll_pages(state)
        result = await self._fetcher(self.provider, state)
        if result.not_modified:
            self._log.debug("source_not_modified")
            return PollSummary(not_modified=True)
        summary, _ = await self._publish(state, result, prune=result.complete)
        return summary

    async def _poll_pages(self, state: ConnectorState) -> PollSummary:
        assert self._page_fetcher is not None
        total: PollSummary | None = None
        seen: set[str] = set()
        complete = False
        pages = self._page_fetcher(self.provider, state)
        try:
            async for page in pages:
                if page.not_modified and total is None:
                    self._log.debug("source_not_modified")
                    return PollSummary(not_modified=True)
                # Cheap (the versions are cached), and gives the generation that
                # the previous page's commit moved to.
                current = await self._store.load()
                summary, page_seen = await self._publish(current, page, prune=False)
                seen |= page_seen
                total = summary if total is None else total + summary
                complete = page.complete
        finally:
            # An async generator left suspended (early return, error) would keep
            # its response open until garbage collection.
            if isinstance(pages, AsyncGenerator):
                await pages.aclose()
        if total is None:
            return PollSummary(pages=0)
        return total + await self._prune(seen) if complete else total

    async def _prune(self, seen: set[str]) -> PollSummary:
        """After a complete paged fetch: forget the ids that no page held."""
        state = await self._store.load()
        removed = list(state.item_versions.keys() - seen)
        if removed:
            await self._store.commit(state, [], removed=removed)
        return PollSummary(removed=len(removed), pages=0)

    async def _publish(
        self, state: ConnectorState, result: FetchResult[TRaw], *, prune: bool
    ) -> tuple[PollSummary, set[str]]:
        """Commit one fetch or page: its changes, its meta and, when ``prune``,
        the removal of every known id it does not hold. Changes are committed
        while the items are still being diffed, a chunk at a time."""
        meta = self._store.commit_meta(
            state, etag=result.etag, last_modified=result.last_modified, cursors=result.cursors
        )
        async with self._store.open_commit(state) as session:
            counts = await self._differ.detect_changes(result.items, state.item_versions,
                                                       session)
            removed = _not_seen(state.item_versions, counts.seen) if prune else []
            await session.finish(removed, meta, force=_meta_changed(state, result))
        summary = PollSummary(
            fetched=len(result.items),
            published=counts.published,
            skipped_unchanged=counts.skipped,
            failed=counts.failed,
            removed=len(removed),
        )
        return summary, counts.seen

    async def aclose(self) -> None:
        if self._on_close is not None:
            await self._on_close()


def _not_seen(known: Mapping[str, str], seen: set[str]) -> list[str]:
    """The known ids that a complete fetch did not hold. Most polls drop none: the
    superset check (no new set) settles those at a fifth of the cost of the set
    difference, which builds a set of every known id."""
    if seen.issuperset(known):
        return []
    return list(known.keys() - seen)


def _meta_changed(state: ConnectorState, result: FetchResult[Any]) -> bool:
    return (
        (result.etag is not None and result.etag != state.etag)
        or (result.last_modified is not None and result.last_modified != state.last_modified)
        or any(state.cursors.get(k) != v for k, v in result.cursors.items())
    )
