"""Fault injection for the tests and the load bench: a database that goes away for a while.

:class:`DatabaseOutage` hooks an engine so that every statement fails the way a stopped or
unreachable database fails (the driver's ``OperationalError``), while it is on or while a flag
file exists (so another process, such as ``bench/load.py``, can switch it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event

OUTAGE_MESSAGE = "the database is unavailable (injected outage)"


class DatabaseOutage:
    """Make ``engine`` fail every statement while :attr:`on` is True or ``flag`` exists."""

    def __init__(self, engine: Engine, flag: Path | None = None) -> None:
        self.engine = engine
        self.flag = flag
        self.on = False
        self.refused = 0  # statements failed so far
        event.listen(engine, "before_cursor_execute", self._check)

    @property
    def active(self) -> bool:
        return self.on or (self.flag is not None and self.flag.exists())

    def _check(self, *_args: Any) -> None:
        if self.active:
            self.refused += 1
            raise self.engine.dialect.loaded_dbapi.OperationalError(OUTAGE_MESSAGE)

    def remove(self) -> None:
        event.remove(self.engine, "before_cursor_execute", self._check)
