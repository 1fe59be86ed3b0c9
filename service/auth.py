"""Bearer tokens from ``LAB_AUTH_TOKENS``: who may upload into which ingest table.

Format: entries separated by ``;``, each ``TOKEN:TABLE[,TABLE...]`` or ``TOKEN:*`` (every
table of the ingest schema), e.g. ``s3cret-token-one-abc:records,records_pk;ops-token-xyz:*``.
Tokens are at least 16 characters and contain no ``:``, ``;``, ``,`` or whitespace.

Tokens are required whenever some are configured, and always outside development mode
(``LAB_MODE=production``): a production service without tokens refuses to start.
A presented token is compared with *every* configured token with ``hmac.compare_digest``
over SHA-256 digests (equal lengths), never stopping at the first match, so the time taken
does not tell which token or how much of one matched.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from flask import Flask, current_app, request

from lab.config import ENV_AUTH_TOKENS, ENV_MODE, Settings
from lab.errors import LabError

MODES = ("development", "production")
MIN_TOKEN_CHARS = 16
ALL_TABLES = "*"
_EXTENSION = "lab_auth"


@dataclass(frozen=True)
class Grant:
    digest: bytes  # SHA-256 of the token; the token itself is not kept
    tables: frozenset[str]  # table names, or {"*"}

    def allows(self, table: str) -> bool:
        return ALL_TABLES in self.tables or table in self.tables


@dataclass(frozen=True)
class Policy:
    required: bool
    grants: tuple[Grant, ...]


def _bad(message: str) -> LabError:
    return LabError(f"{ENV_AUTH_TOKENS}: {message}", code="bad_config")


def parse_tokens(text: str) -> tuple[Grant, ...]:
    """The grants of a ``LAB_AUTH_TOKENS`` value; a malformed value is a LabError."""
    grants: list[Grant] = []
    seen: set[bytes] = set()
    for number, entry in enumerate(filter(None, (e.strip() for e in text.split(";"))), 1):
        token, colon, tables = entry.partition(":")
        token = token.strip()
        names = frozenset(filter(None, (t.strip() for t in tables.split(","))))
        if not colon or not names:
            raise _bad(f"entry {number} must be TOKEN:TABLE[,TABLE...] or TOKEN:*")
        if len(token) < MIN_TOKEN_CHARS or any(c.isspace() or c == "," for c in token):
            raise _bad(
                f"the token of entry {number} must be at least {MIN_TOKEN_CHARS} characters "
                "without whitespace or commas"
            )
        if ALL_TABLES in names and len(names) > 1:
            raise _bad(f"entry {number} mixes '*' with table names")
        digest = hashlib.sha256(token.encode()).digest()
        if digest in seen:
            raise _bad(f"entry {number} repeats a token")
        seen.add(digest)
        grants.append(Grant(digest, names))
    return tuple(grants)


def policy(settings: Settings) -> Policy:
    """What the settings ask for; refuses a production service without tokens."""
    if settings.mode not in MODES:
        raise LabError(
            f"{ENV_MODE} must be one of {', '.join(MODES)}, got {settings.mode[:40]!r}",
            code="bad_config",
        )
    grants = parse_tokens(settings.auth_tokens)
    if settings.mode != "development" and not grants:
        raise LabError(
            f"{ENV_MODE}={settings.mode} requires bearer tokens: set {ENV_AUTH_TOKENS} "
            "(e.g. 'a-long-random-token:*'; see docs/security.md)",
            code="bad_config",
        )
    return Policy(required=bool(grants), grants=grants)


def _unauthorized(message: str) -> LabError:
    return LabError(message, code="unauthorized", status=401)


def _match(presented: str, grants: tuple[Grant, ...]) -> Grant | None:
    """The grant of ``presented``: every grant is compared, whatever matched before."""
    digest = hashlib.sha256(presented.encode()).digest()
    found: Grant | None = None
    for grant in grants:
        if hmac.compare_digest(digest, grant.digest):
            found = grant
    return found


def authorize(table: str | None) -> None:
    """Let the request act on ``ingest.<table>`` (any table: None), or raise 401 (no or
    unknown token) / 403 (a valid token without that table)."""
    rules: Policy = current_app.extensions[_EXTENSION]
    if not rules.required:
        return
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
    grant = _match(token.strip(), rules.grants)
    if grant is None:
        raise _unauthorized("the bearer token is not valid")
    if table is not None and not grant.allows(table):
        raise LabError(
            f"this token has no access to table {table[:80]!r}", code="forbidden", status=403
        )


def init_app(app: Flask) -> None:
    """Read the policy once per worker; a bad configuration stops the worker's boot."""
    app.extensions[_EXTENSION] = policy(app.config["SETTINGS"])
