"""Statements PostgreSQL plans once per connection: `PREPARE` on first use, then `EXECUTE`.

psycopg2 binds parameters on the client, so PostgreSQL parses and plans every statement it is
sent, however often the same text comes. For the e-mail worker's two statements per wave that
planning was a third of their time in PostgreSQL (docs/benchmarks.md). A prepared statement is
planned for its first few runs and then, when PostgreSQL finds the generic plan as good, not at
all. Each pooled connection prepares its own copy: SQLAlchemy clears a connection's `info` when
it replaces a broken connection, so a reconnect prepares again. Errors pass through SQLAlchemy
(`exec_driver_sql`), so a lost connection is invalidated and reported like any other statement's.

Not for a connection pooler in transaction mode (PgBouncer), where a session's prepared
statements are not there on the next transaction; connect the e-mail workers to PostgreSQL.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row

_BIND = re.compile(r"(?<![:\w]):(\w+)")
_EXISTS = "SELECT 1 FROM pg_prepared_statements WHERE name = %(name)s"


@dataclass(frozen=True)
class PreparedStatement:
    """`sql` with `:name` binds, each given its PostgreSQL type in `types` (in any order)."""

    name: str
    sql: str
    types: Mapping[str, str]
    _order: tuple[str, ...] = field(init=False, repr=False)
    _prepare: str = field(init=False, repr=False)
    _execute: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        order: list[str] = []

        def number(match: re.Match[str]) -> str:
            bind = match.group(1)
            if bind not in order:
                order.append(bind)
            return f"${order.index(bind) + 1}"

        body = _BIND.sub(number, self.sql)
        if set(order) != set(self.types):
            raise ValueError(f"{self.name}: binds {sorted(order)} but types {sorted(self.types)}")
        declared = ", ".join(self.types[bind] for bind in order)
        # The arguments are cast too: psycopg2 sends a list as ARRAY['…'], a text[].
        arguments = ", ".join(f"CAST(%({bind})s AS {self.types[bind]})" for bind in order)
        object.__setattr__(self, "_order", tuple(order))
        object.__setattr__(self, "_prepare", f"PREPARE {self.name} ({declared}) AS {body}")
        object.__setattr__(self, "_execute", f"EXECUTE {self.name} ({arguments})")

    def run(self, connection: Connection, values: Mapping[str, Any]) -> Sequence[Row[Any]]:
        """Run with `values` (one per bind) and return every row it returns."""
        prepared: set[str] = connection.connection.info.setdefault("prepared_statements", set())
        if self.name not in prepared:
            # Asked, not assumed: a connection whose `info` was reset may still hold it.
            if not connection.exec_driver_sql(_EXISTS, {"name": self.name}).first():
                connection.exec_driver_sql(self._prepare)
            prepared.add(self.name)
        result = connection.exec_driver_sql(self._execute, {b: values[b] for b in self._order})
        return result.all() if result.returns_rows else []
