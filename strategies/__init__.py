"""Insert strategies, registered by name. A new strategy is one module plus one line here."""

from __future__ import annotations

from lab.errors import LabError
from strategies.base import Strategy
from strategies.psycopg_binary import PsycopgBinary
from strategies.psycopg_text import PsycopgText

#: name → strategy class. The service, the tests and the experiments all read this.
REGISTRY: dict[str, type[Strategy]] = {
    PsycopgText.name: PsycopgText,
    PsycopgBinary.name: PsycopgBinary,
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
