"""Booking's HTTP entrypoints: translate requests, delegate to the service layer."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter

from ticketing.booking.service import BookingService
from ticketing.contracts.booking import (
    Booking,
    BookingCreate,
    BookingPage,
    Customer,
    CustomerCreate,
)
from ticketing.shared.observability import current_correlation_id
from ticketing.shared.pagination import CURSOR_PATTERN
from ticketing.shared.security import requires

WRITE = "bookings:write"

MAX_PAGE_SIZE = 100


def provide_bookings(request: Request[Any, Any, Any]) -> BookingService:
    # From the request's app, not Litestar's ``state`` parameter: that builds a State per call.
    service: BookingService = request.app.state.bookings
    return service


Bookings = NamedDependency[BookingService]
DEPENDENCIES = {"bookings": Provide(provide_bookings, sync_to_thread=False)}
IdempotencyKey = Annotated[
    str | None,
    HeaderParameter(
        name="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="Repeat a request safely: the same key and body return the first answer.",
        required=False,
    ),
]


class CustomerController(Controller):
    path = "/api/v1/customers"
    tags = ["customers"]
    dependencies = DEPENDENCIES

    @post("/", status_code=201, summary="Create a customer", opt=requires(WRITE))
    async def create_customer(
        self, data: JSONBody[CustomerCreate], bookings: Bookings
    ) -> Response[Customer]:
        customer = await bookings.create_customer(data)
        return Response(
            customer, status_code=201, headers={"Location": f"{self.path}/{customer.id}"}
        )

    @get("/{customer_id:uuid}", summary="Get a customer")
    async def get_customer(self, customer_id: FromPath[uuid.UUID], bookings: Bookings) -> Customer:
        return await bookings.get_customer(customer_id)

    @get("/{customer_id:uuid}/bookings", summary="A customer's bookings, oldest first")
    async def list_bookings(
        self,
        customer_id: FromPath[uuid.UUID],
        bookings: Bookings,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 20,
        cursor: Annotated[str | None, QueryParameter(pattern=CURSOR_PATTERN)] = None,
    ) -> BookingPage:
        return await bookings.list_bookings(customer_id, limit=limit, cursor=cursor)


class BookingController(Controller):
    path = "/api/v1/bookings"
    tags = ["bookings"]
    dependencies = DEPENDENCIES

    @post(
        "/",
        status_code=202,
        summary="Request tickets; the booking settles to CONFIRMED or REJECTED shortly",
        opt=requires(WRITE),
    )
    async def request_booking(
        self,
        request: Request[Any, Any, Any],
        data: JSONBody[BookingCreate],
        bookings: Bookings,
        idempotency_key: IdempotencyKey = None,
    ) -> Response[Booking]:
        accepted = await bookings.request_booking(
            data,
            raw_body=await request.body(),
            idempotency_key=idempotency_key,
            correlation_id=current_correlation_id(),
            authorization=request.headers.get("authorization"),
        )
        headers = {"Location": f"{self.path}/{accepted.booking_id}"}
        if accepted.replayed:
            headers["Idempotent-Replayed"] = "true"
        # The stored JSON is sent as it is, so that a replay is byte for byte the first answer.
        return Response(
            accepted.body,  # type: ignore[arg-type]
            status_code=202,
            media_type="application/json",
            headers=headers,
        )

    @get("/{booking_id:uuid}", summary="Get a booking and its status")
    async def get_booking(self, booking_id: FromPath[uuid.UUID], bookings: Bookings) -> Booking:
        return await bookings.get_booking(booking_id)
