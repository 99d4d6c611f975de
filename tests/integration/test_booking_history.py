"""A booking's state at a past time (``as_of``), asked through the real booking app with the ids and
times the API itself hands out."""

from __future__ import annotations

from datetime import UTC, datetime

from tests.harness.serving import Stack
from tests.integration.flow import book, create_customer, setup_sale

PROBLEM = "application/problem+json"


async def test_as_of_with_the_id_of_a_customer_is_not_found(stack: Stack) -> None:
    """A customer's id names a stream of booking's store too (CustomerRegistered). Asked as a
    booking, now or as of any time, it is no booking: 404, as inventory answers for a venue's
    id, never a server error."""
    customer = await create_customer(stack.booking)
    path = f"/api/v1/bookings/{customer['id']}"
    assert (await stack.booking.get(path)).status_code == 404
    as_of = datetime.now(UTC).isoformat()
    response = await stack.booking.get(path, params={"as_of": as_of})
    assert response.status_code == 404, (response.status_code, response.text)
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_as_of_the_created_at_a_booking_reported_shows_that_booking(stack: Stack) -> None:
    """The 202 answer says the booking was created at ``created_at``; asked as of that very
    moment, the booking existed (PENDING), it did not "not exist"."""
    customer_id, event_id = await setup_sale(stack, capacity=10)
    accepted = await book(stack, customer_id, event_id, count=1)
    assert accepted.status_code == 202, accepted.text
    body = accepted.json()
    response = await stack.booking.get(
        f"/api/v1/bookings/{body['id']}", params={"as_of": body["created_at"]}
    )
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "PENDING"
    assert response.json()["created_at"] == body["created_at"]
