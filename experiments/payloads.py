"""Upload bodies for the load test, built once before any request is sent.

Pure functions (no Locust, no network): the locustfile calls them at test start so that
generating CSV never competes with sending it, and the tests call them directly.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from lab.errors import LabError
from lab.fakedata import csv_bytes

Encoding = Literal["multipart", "raw"]
ENCODINGS: tuple[Encoding, ...] = ("multipart", "raw")

#: A fixed boundary: the body is built once and sent many times, so it never varies.
BOUNDARY = "ingest-lab-load-boundary-7d3f0a"

#: The row appended to a rejected upload: ``quantity`` is not an integer.
BAD_ROW = (
    "99999999,00000000-0000-4000-8000-000000000000,Bad Row,bad@example.com,1.00,"
    "not-a-number,2020-01-01T00:00:00+00:00,true,1.0,books\n"
)
BAD_COLUMN = "quantity"


@dataclass(frozen=True)
class Payload:
    """One request body and what the service must answer to it."""

    body: bytes
    content_type: str
    #: Data rows the service must acknowledge (0 for a payload it must reject).
    rows: int
    #: For a payload that must be rejected: the bad row's line as a CSV record number
    #: (header = 1) and as a physical line (quoted fields may hold line breaks). The
    #: strategy contract speaks of records; PostgreSQL's COPY reports physical lines.
    bad_line: int | None = None
    bad_physical_line: int | None = None

    def names_bad_line(self, line: object) -> bool:
        """Whether an error's ``line`` points at the bad row, by either count."""
        return line is not None and line in (self.bad_line, self.bad_physical_line)


def parse_mix(text: str) -> tuple[tuple[str, int], ...]:
    """``"psycopg-text:3,psycopg-binary:1"`` -> ``(("psycopg-text", 3), ("psycopg-binary", 1))``.

    A name without ``:weight`` weighs 1; weight 0 drops the name; repeats are refused.
    """
    mix: list[tuple[str, int]] = []
    seen: set[str] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        name, sep, raw_weight = part.partition(":")
        name = name.strip()
        try:
            weight = int(raw_weight) if sep else 1
        except ValueError:
            raise LabError(
                f"strategy mix: weight of {name!r} must be an integer, got {raw_weight!r}",
                code="bad_option",
            ) from None
        if not name or weight < 0:
            raise LabError(
                f"strategy mix: {part!r} is not NAME or NAME:WEIGHT (weight >= 0)",
                code="bad_option",
            )
        if name in seen:
            raise LabError(f"strategy mix: {name!r} is listed twice", code="bad_option")
        seen.add(name)
        if weight:
            mix.append((name, weight))
    if not mix:
        raise LabError("strategy mix is empty: give at least one NAME:WEIGHT", code="bad_option")
    return tuple(mix)


#: Granularity of the weights when a reject share is mixed in (1 % steps).
_SCALE = 100


def task_weights(
    mix: tuple[tuple[str, int], ...], reject_share: float
) -> list[tuple[str | None, int]]:
    """Integer task weights: the strategies as mixed, plus ``None`` (a bad upload that must
    be rejected) for ``reject_share`` of all requests."""
    if not 0 <= reject_share < 1:
        raise LabError("reject share must be >= 0 and < 1", code="bad_option")
    total = sum(weight for _, weight in mix) * _SCALE
    weights: list[tuple[str | None, int]] = [(name, w * _SCALE) for name, w in mix]
    rejects = round(total * reject_share / (1 - reject_share))
    if rejects:
        weights.append((None, rejects))
    return weights


def format_mix(mix: tuple[tuple[str, int], ...]) -> str:
    return ",".join(f"{name}:{weight}" for name, weight in mix)


def multipart(csv: bytes, filename: str = "upload.csv") -> tuple[bytes, str]:
    """A ``multipart/form-data`` body with the CSV in field ``file``, and its content type."""
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    return head + csv + tail, f"multipart/form-data; boundary={BOUNDARY}"


def _wrap(csv: bytes, encoding: Encoding) -> tuple[bytes, str]:
    if encoding == "multipart":
        return multipart(csv)
    if encoding == "raw":
        return csv, "text/csv"
    raise LabError(f"unknown body encoding {encoding!r}; use multipart or raw", code="bad_option")


def good(rows: int, *, encoding: Encoding = "multipart", seed: int = 0) -> Payload:
    """``rows`` generated rows of ``ingest.records`` that every strategy must accept."""
    if rows < 1:
        raise LabError("rows per upload must be at least 1", code="bad_option")
    body, content_type = _wrap(csv_bytes(rows, seed=seed), encoding)
    return Payload(body=body, content_type=content_type, rows=rows)


def bad(rows: int, *, encoding: Encoding = "multipart", seed: int = 0) -> Payload:
    """``rows`` good rows followed by one bad one: the service must reject the whole file.

    The bad row comes last so the server has streamed everything before it fails, which
    is the case where a partial load could leak rows if the rollback were wrong.
    """
    if rows < 0:
        raise LabError("rows per upload must be >= 0", code="bad_option")
    good_part = csv_bytes(rows, seed=seed)
    body, content_type = _wrap(good_part + BAD_ROW.encode(), encoding)
    # Header is record 1, the generated records are 2..rows+1, the bad one rows+2.
    return Payload(
        body=body,
        content_type=content_type,
        rows=0,
        bad_line=rows + 2,
        bad_physical_line=good_part.count(b"\n") + 1,
    )
