"""Order's writes on the paths every booking takes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from ticketing.order.tables import orders
from ticketing.shared import sql

ORDER_COLUMNS = (
    "id",
    "booking_id",
    "event_id",
    "ticket_count",
    "total_price",
    "status",
    "reason",
    "created_at",
)
_ADD_ORDERS = sql.insert_sql(orders, ORDER_COLUMNS)


async def add_orders(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> None:
    """Record orders (rows keyed by :data:`ORDER_COLUMNS`) with one multi-row statement, on the
    driver's cursor; a booking that already has its order fails on the unique key (1062)."""
    await sql.run(conn, add_orders_statement(rows))


def add_orders_statement(rows: Sequence[dict[str, Any]]) -> sql.Statement:
    """The statement of :func:`add_orders`, for :func:`ticketing.shared.sql.commit_all`."""
    return sql.Statement(
        _ADD_ORDERS,
        [
            (
                str(row["id"]),
                str(row["booking_id"]),
                str(row["event_id"]),
                *(row[column] for column in ORDER_COLUMNS[3:]),
            )
            for row in rows
        ],
        rows=True,
    )
