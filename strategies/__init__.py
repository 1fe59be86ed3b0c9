"""Insert strategies, registered by name. A new strategy is one module plus one line here."""

from __future__ import annotations

from lab.errors import LabError
from strategies.arrow_adbc import ArrowAdbc
from strategies.asyncpg_copy import AsyncpgCopy
from strategies.base import Strategy
from strategies.parallel_binary import ParallelBinary
from strategies.parallel_freeze import ParallelFreeze
from strategies.parallel_text import ParallelText
from strategies.psycopg_binary import PsycopgBinary
from strategies.psycopg_text import PsycopgText
from strategies.unlogged_staging import UnloggedStaging

#: name → strategy class. The service, the tests and the experiments all read this.
REGISTRY: dict[str, type[Strategy]] = {
    PsycopgText.name: PsycopgText,
    PsycopgBinary.name: PsycopgBinary,
    AsyncpgCopy.name: AsyncpgCopy,
    UnloggedStaging.name: UnloggedStaging,
    ParallelBinary.name: ParallelBinary,
    ParallelFreeze.name: ParallelFreeze,
    ParallelText.name: ParallelText,
    ArrowAdbc.name: ArrowAdbc,
}


def get(name: str) -> Strategy:
    """A strategy instance by name; an unknown name lists the valid ones."""
    try:
        return REGISTRY[name]()
    except KeyError:
        raise LabError(
            f"unknown strategy {name[:80]!r}; valid strategies: {', '.join(REGISTRY)}",
            code="unknown_strategy",
        ) from None


def names() -> list[str]:
    return list(REGISTRY)
