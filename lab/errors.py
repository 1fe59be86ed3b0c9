"""The one error type for mistakes a user can fix.

It is raised anywhere (strategies, migrations, the CLI, the service) and caught once at
the edge: the HTTP layer turns it into a 4xx JSON body, the CLI into a message and exit 1.
Anything else escaping is a bug in the lab, never the user's fault.
"""

from __future__ import annotations

from typing import Any


class LabError(Exception):
    """A user-fixable problem, with enough detail to locate it in the input."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid_input",
        status: int = 400,
        line: int | None = None,
        column: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.line = line
        self.column = column

    def to_dict(self) -> dict[str, Any]:
        """The JSON body the service sends: ``{"error": {code, message, line, column}}``."""
        return {
            "error": {
                "code": self.code,
                "message": self.message,
                "line": self.line,
                "column": self.column,
            }
        }

    def __str__(self) -> str:
        where = []
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        return f"{self.message} ({', '.join(where)})" if where else self.message
