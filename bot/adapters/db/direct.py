"""``DirectStatement``: a store statement run on the asyncpg connection itself (PostgreSQL only).

Why: on the alert storm of bench/intake.py, SQLAlchemy's per-statement execution (its execution context,
result objects and one greenlet hop per call) cost ~30 % of the incident service's CPU on PostgreSQL;
sending the very same statements straight to asyncpg took the service from ~1.6 to ~1.1 ms of CPU per
webhook of two alerts (bench/README.md).

What stays SQLAlchemy's:

- the SQL: each statement is compiled once by the engine's own dialect, to the text SQLAlchemy would
  send (``for_executemany`` for the held writes, which are sent as ``executemany``);
- the values, both ways: every bind parameter goes through its type's bind processor and every result
  column through its result processor, as SQLAlchemy would apply them (``UTCDateTime`` refuses naive
  datetimes and hands back aware UTC; JSON is serialised for the codec SQLAlchemy installed);
- the pool and the transaction. A transaction begins through SQLAlchemy (its adapter sends ``BEGIN``
  with the transaction's first statement), and a statement goes direct only while
  ``asyncpg.Connection.is_in_transaction()`` holds, so it commits or rolls back with the rest.

Errors are asyncpg's own (``asyncpg.exceptions.…``) rather than SQLAlchemy's wrappers of them; nothing
in the store's callers tells them apart (a failed transaction is a failed transaction).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

Process = Callable[[Any], Any] | None


class DirectStatement:
    """One statement compiled for one dialect: its SQL, named values → asyncpg's positional arguments, and
    asyncpg's records → mappings of converted column values."""

    def __init__(self, statement: Executable, dialect: Dialect, columns: Sequence[str] | None = None) -> None:
        if not isinstance(statement, ClauseElement):
            raise TypeError(f"not a SQL statement: {statement!r}")
        compiled = statement.compile(
            dialect=dialect, column_keys=list(columns) if columns is not None else None, for_executemany=bool(columns)
        )
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {statement!r}")
        self.sql = compiled.string
        self._binds: list[tuple[str, Process, Any]] = []
        for name in compiled.positiontup or ():
            bind = compiled.binds[name]
            process = bind.type.dialect_impl(dialect).bind_processor(dialect)
            self._binds.append((name, process, None if bind.required else bind.effective_value))
        exported = getattr(statement, "exported_columns", None)
        self._columns: list[tuple[str, Process]] = [
            (name, column.type.dialect_impl(dialect).result_processor(dialect, None))
            for name, column in (exported.items() if exported is not None else ())
        ]

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for ``values`` (by bind name; fixed values fill in the rest)."""
        out: list[Any] = []
        for name, process, fixed in self._binds:
            value = values.get(name, fixed)
            out.append(process(value) if process is not None else value)
        return out

    def rows(self, records: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """asyncpg's records as SQLAlchemy would have handed their columns back."""
        columns = self._columns
        return [
            {name: (process(record[name]) if process is not None else record[name]) for name, process in columns}
            for record in records
        ]


class DirectStatements:
    """The direct forms of a dialect's statements, compiled on first use."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self._compiled: dict[tuple[int, tuple[str, ...] | None], tuple[Executable, DirectStatement]] = {}

    def get(self, statement: Executable, columns: Sequence[str] | None = None) -> DirectStatement:
        """``statement`` compiled (for an ``executemany`` of rows with ``columns`` when given)."""
        key = (id(statement), tuple(columns) if columns is not None else None)
        found = self._compiled.get(key)
        if found is None or found[0] is not statement:
            found = (statement, DirectStatement(statement, self.dialect, columns))
            self._compiled[key] = found
        return found[1]


_BY_DIALECT: weakref.WeakKeyDictionary[Dialect, DirectStatements] = weakref.WeakKeyDictionary()


def direct_statements(dialect: Dialect) -> DirectStatements:
    """The direct statements of ``dialect`` (one engine's), shared by every store on that engine."""
    found = _BY_DIALECT.get(dialect)
    if found is None:
        found = _BY_DIALECT[dialect] = DirectStatements(dialect)
    return found
