from __future__ import annotations

from collections.abc import Iterator

import pytest

from framework.testing import TansuBroker


@pytest.fixture(scope="module")
def kafka() -> Iterator[TansuBroker]:
    """One broker per module (ready in ~0.1 s); tests use their own topics."""
    with TansuBroker() as broker:
        yield broker
