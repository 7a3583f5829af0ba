"""The store's errors, the same whichever backend is underneath.

Each backend translates its driver's exceptions (``sqlite3``, aiosqlite, asyncpg) at
its boundary, so callers (commands, the history writer, plugin migrations) catch
these and never a driver's own. Messages are one line and never hold a password.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """A statement or the database failed.

    ``permanent``: the statement itself is wrong (a syntax error, a broken constraint,
    a parameter of the wrong type), so trying it again cannot help; otherwise the
    failure may pass (a full disk, an I/O error).
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class DatabaseBusy(DatabaseError):
    """Another process held the database (or the rows) longer than we were willing
    to wait, or the database picked this transaction to give way (a deadlock)."""

    def __init__(self, waited: float, reason: str | None = None) -> None:
        text = reason or f"the database stayed locked for {waited:.0f}s"
        super().__init__(f"{text}; try again shortly")
        self.waited = waited


class DatabaseUnavailable(DatabaseError):
    """The database cannot be reached: refused, timed out, or the connection was lost."""

    def __init__(self, display_url: str, reason: str) -> None:
        super().__init__(f"cannot reach the database {display_url}: {reason}")
        self.display_url = display_url
        self.reason = reason


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``exc`` in one short line: its message, else its type's name."""
    text = " ".join(str(exc).split())
    return text[:limit] if text else type(exc).__name__
