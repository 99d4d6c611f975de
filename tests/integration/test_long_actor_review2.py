"""Review: a client id of any length may act (tokens put no limit on ``azp``, and its
idempotency keys are kept under a digest for that reason), but every event stores the
client id whole as its ``actor``, a ``VARCHAR(255)``: any request of a client whose id is longer
fails on the store's insert (data too long), an HTTP 500, whatever it asked."""

from __future__ import annotations

import uuid
from typing import Any, cast

from sqlalchemy.ext.asyncio import AsyncEngine

from tests.integration.test_booking_events import engine  # noqa: F401 - its own database
from ticketing.booking.records import SqlBookingRecords
from ticketing.booking.service import BookingService
from ticketing.booking.settlement import CONSUMER
from ticketing.contracts.booking import CustomerCreate
from ticketing.shared.eventstore import Cause


async def test_a_client_with_a_long_id_can_register_a_customer(engine: AsyncEngine) -> None:  # noqa: F811
    service = BookingService(
        SqlBookingRecords(engine, consumer=CONSUMER), cast(Any, None), max_tickets=10
    )
    long_client = Cause("c" * 300, correlation_id="req-long", causation_id="req-long")
    email = f"long.{uuid.uuid4().hex[:10]}@example.com"
    created = await service.create_customer(CustomerCreate("Lee", email), long_client)
    assert created.email == email
