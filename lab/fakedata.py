"""Deterministic, realistic CSV rows for ``ingest.records``.

Text fields are plain most of the time; a controllable share needs CSV quoting (commas,
doubled quotes, CR/LF inside quotes, non-ASCII), and a controllable share of nullable
fields is empty, which PostgreSQL's CSV format reads as NULL.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterator
from typing import TextIO

HEADER = (
    "id",
    "uuid",
    "name",
    "email",
    "amount",
    "quantity",
    "created_at",
    "is_active",
    "score",
    "category",
)

_FIRST = [
    "Ada",
    "Grace",
    "Linus",
    "Barbara",
    "Edsger",
    "Donald",
    "Frances",
    "Ken",
    "Margaret",
    "Dennis",
    "Radia",
    "Guido",
    "Anita",
    "Niklaus",
    "Shafi",
    "Tim",
]
_LAST = [
    "Lovelace",
    "Hopper",
    "Torvalds",
    "Liskov",
    "Dijkstra",
    "Knuth",
    "Allen",
    "Thompson",
    "Hamilton",
    "Ritchie",
    "Perlman",
    "van Rossum",
    "Borg",
    "Wirth",
    "Goldwasser",
    "Berners-Lee",
]
# Values that force quoting: a comma, a doubled quote, line breaks, and non-ASCII text.
_TRICKY = [
    "Smith, Jane",
    'Dwayne "The Rock" Johnson',
    "first line\nsecond line",
    "carriage\r\nreturn",
    "José Müller-Øster",
    "北京市 👩‍💻",
    'O\'Hara, "Scarlett"',
]
_DOMAINS = ["example.com", "example.org", "mail.example.net", "corp.example"]
_CATEGORIES = [
    "books",
    "electronics",
    "garden",
    "grocery",
    "toys",
    "sports",
    "music",
    "health",
    "auto",
    "office",
]
_EPOCH = 1_577_836_800  # 2020-01-01T00:00:00Z
# (offset seconds, ISO suffix): timestamps carry an explicit offset, as exports often do.
_ZONES = [(0, "+00:00"), (-5 * 3600, "-05:00"), (5 * 3600 + 1800, "+05:30")]
# uuid4 bits: version nibble 4 and the RFC 4122 variant, set on a random 128-bit integer.
_UUID_CLEAR = ~((0xF << 76) | (0xC << 60))
_UUID_SET = (4 << 76) | (0x8 << 60)


def _uuid4(bits: int) -> str:
    h = f"{(bits & _UUID_CLEAR) | _UUID_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _quote(value: str) -> str:
    if any(ch in value for ch in ',"\r\n') or value == "":
        return '"' + value.replace('"', '""') + '"'
    return value


def rows(
    n: int, *, seed: int = 0, quote_share: float = 0.05, null_share: float = 0.02
) -> Iterator[str]:
    """Yield ``n`` CSV lines (without the header), each ending in a newline."""
    rng = random.Random(seed)
    rand = rng.random
    bits = rng.getrandbits
    gauss = rng.gauss
    strftime, gmtime = time.strftime, time.gmtime

    def pick(pool: list[str]) -> str:
        return pool[int(rand() * len(pool))]

    tricky = [_quote(v) for v in _TRICKY]
    nullable = (2, 3, 4, 5, 8, 9)  # every column but id, uuid, created_at and is_active
    for i in range(1, n + 1):
        name = pick(tricky) if rand() < quote_share else f"{pick(_FIRST)} {pick(_LAST)}"
        offset, suffix = _ZONES[int(rand() * 3)]
        created = strftime("%Y-%m-%dT%H:%M:%S", gmtime(_EPOCH + int(rand() * 2e8) + offset))
        fields = [
            str(i),
            _uuid4(bits(128)),
            name,
            f"user{i}@{pick(_DOMAINS)}",
            f"{int(rand() * 10_100_000) / 100 - 1000:.2f}",
            str(int(rand() * 1001)),
            created + suffix,
            "true" if rand() < 0.7 else "false",
            f"{gauss(50, 15):.6f}",
            pick(_CATEGORIES),
        ]
        # About null_share of the nullable fields are empty, i.e. NULL.
        if rand() < null_share * len(nullable):
            fields[nullable[int(rand() * len(nullable))]] = ""
        yield ",".join(fields) + "\n"


def write_csv(
    out: TextIO, n: int, *, seed: int = 0, quote_share: float = 0.05, null_share: float = 0.02
) -> None:
    """Write the header and ``n`` rows to a text stream opened with ``newline=''``."""
    out.write(",".join(HEADER) + "\n")
    chunk: list[str] = []
    for line in rows(n, seed=seed, quote_share=quote_share, null_share=null_share):
        chunk.append(line)
        if len(chunk) >= 10_000:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk))


def csv_bytes(
    n: int, *, seed: int = 0, quote_share: float = 0.05, null_share: float = 0.02
) -> bytes:
    """The whole file as bytes, for tests and benchmarks of modest size."""
    import io

    buf = io.StringIO(newline="")
    write_csv(buf, n, seed=seed, quote_share=quote_share, null_share=null_share)
    return buf.getvalue().encode()
