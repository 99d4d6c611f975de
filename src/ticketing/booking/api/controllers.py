"""Booking's Litestar controllers: customers, their bookings and each booking's status, history,
confirm and cancel (requesting a booking is :mod:`~ticketing.booking.api.booking_request`)."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any

from litestar import Controller, Request, Response, get, post
from litestar.di import NamedDependency
from litestar.exceptions import (
    NotAuthorizedException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream

from ticketing.booking.lifecycle import Caller
from ticketing.booking.push import StatusPush
from ticketing.booking.service import BookingService
from ticketing.contracts.booking import (
    MAX_WAIT_SECONDS,
    Booking,
    BookingHistoryPage,
    BookingPage,
    Customer,
    CustomerCreate,
)
from ticketing.shared.app import from_app_state
from ticketing.shared.auth.middleware import actor_of, cause_of, requires
from ticketing.shared.auth.tokens import Principal
from ticketing.shared.errors import InvalidInput
from ticketing.shared.http.disconnect import CALLER_LEFT, until_caller_leaves
from ticketing.shared.http.history import AS_OF, parse_as_of
from ticketing.shared.http.pagination import CURSOR_PATTERN, VERSION_CURSOR_PATTERN

WRITE = "bookings:write"
ADMIN = "bookings:admin"  # may confirm or cancel any client's booking
WAIT = QueryParameter(
    gt=0,
    le=MAX_WAIT_SECONDS,
    description="Seconds to wait for the booking to leave PENDING (or CANCELLING): the answer "
    "comes as soon as it does, or with the booking as it is when the time is over.",
)
NOT_YOURS = ResponseSpec(
    None, description="The booking is another client's (and the caller lacks bookings:admin)"
)
LAST_EVENT_ID = HeaderParameter(
    name="Last-Event-ID",
    required=False,
    description="The id of the last event received: the stream resumes after it.",
)
BOOKINGS_PATH = "/api/v1/bookings"
MAX_PAGE_SIZE = 100


Bookings = NamedDependency[BookingService]
DEPENDENCIES = {"bookings": from_app_state("bookings")}


class CustomerController(Controller):
    path = "/api/v1/customers"
    tags = ["customers"]
    dependencies = DEPENDENCIES

    @post("/", status_code=201, summary="Create a customer", opt=requires(WRITE))
    async def create_customer(
        self, request: Request[Any, Any, Any], data: JSONBody[CustomerCreate], bookings: Bookings
    ) -> Response[Customer]:
        customer = await bookings.create_customer(data, cause_of(request.scope))
        return Response(
            customer, status_code=201, headers={"Location": f"{self.path}/{customer.id}"}
        )

    @get("/{customer_id:uuid}", summary="Get a customer")
    async def get_customer(self, customer_id: FromPath[uuid.UUID], bookings: Bookings) -> Customer:
        return await bookings.get_customer(customer_id)

    @get(
        "/{customer_id:uuid}/bookings/stream",
        summary="A customer's booking changes as they happen (text/event-stream)",
        description="One `booking` event per change of one of the customer's bookings, its "
        "`id:` the change's position in booking's event store: reconnect with `Last-Event-ID` "
        "to miss nothing. A comment line every `TICKETING_STREAM_HEARTBEAT_SECONDS` keeps "
        "proxies from closing an idle stream. A reader that falls behind is disconnected "
        "(reconnect to resume).",
        media_type="text/event-stream",
        responses={
            429: ResponseSpec(None, description="The client holds too many open streams"),
        },
    )
    async def booking_stream(
        self,
        request: Request[Any, Any, Any],
        customer_id: FromPath[uuid.UUID],
        bookings: Bookings,
        last_event_id: Annotated[str | None, LAST_EVENT_ID] = None,
    ) -> Stream:
        after = None if last_event_id is None else _position(last_event_id)
        await bookings.get_customer(customer_id)  # 404 for an unknown customer
        push: StatusPush = request.app.state.status_push
        client = actor_of(request.scope)
        push.limit.check(client)  # refused before the stream starts; held while it runs
        return Stream(
            push.stream(customer_id, client, after),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

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
    path = BOOKINGS_PATH
    tags = ["bookings"]
    dependencies = DEPENDENCIES

    @get(
        "/{booking_id:uuid}",
        summary="Get a booking and its status; with wait, as soon as it settles",
        responses={
            429: ResponseSpec(None, description="The client holds too many open waits"),
        },
    )
    async def get_booking(
        self,
        request: Request[Any, Any, Any],
        booking_id: FromPath[uuid.UUID],
        bookings: Bookings,
        as_of: Annotated[str | None, AS_OF] = None,
        wait: Annotated[float | None, WAIT] = None,
    ) -> Response[Booking]:
        if wait is None:
            when = None if as_of is None else parse_as_of(as_of)
            return Response(await bookings.get_booking(booking_id, as_of=when))
        if as_of is not None:
            raise InvalidInput("wait and as_of do not go together: a past state never changes")
        push: StatusPush = request.app.state.status_push
        settled: list[Booking] = []  # empty when the client left and the wait was cancelled
        with push.limit.held(actor_of(request.scope)):
            async with until_caller_leaves(request.receive):
                read = functools.partial(bookings.get_booking, booking_id)
                settled.append(await push.feed.until_settled(booking_id, read, wait))
        if not settled:  # nobody reads this answer; the log and the metrics do
            return Response(None, status_code=CALLER_LEFT)  # type: ignore[arg-type]
        return Response(settled[0])

    @post(
        "/{booking_id:uuid}/confirm",
        status_code=200,
        summary="Confirm a HELD booking (stands in for its payment)",
        description="Confirming a CONFIRMED booking returns it unchanged. A PENDING booking "
        "is 409 with Retry-After; an EXPIRED, CANCELLING, CANCELLED or REJECTED one is 409. "
        "Only the client that requested the booking, or one with bookings:admin, may.",
        opt=requires(WRITE),
        responses={403: NOT_YOURS},
    )
    async def confirm_booking(
        self, request: Request[Any, Any, Any], booking_id: FromPath[uuid.UUID], bookings: Bookings
    ) -> Booking:
        return await bookings.confirm(booking_id, _caller(request), cause_of(request.scope))

    @post(
        "/{booking_id:uuid}/cancel",
        status_code=202,
        summary="Cancel a booking; it is CANCELLED once its seats are back",
        description="A HELD or CONFIRMED booking goes to CANCELLING, then CANCELLED once "
        "inventory released its seats. A PENDING one is cancelled as soon as it settles "
        "(cancel_requested). A repeat changes nothing; a REJECTED or EXPIRED booking is 409. "
        "Only the client that requested the booking, or one with bookings:admin, may.",
        opt=requires(WRITE),
        responses={403: NOT_YOURS},
    )
    async def cancel_booking(
        self, request: Request[Any, Any, Any], booking_id: FromPath[uuid.UUID], bookings: Bookings
    ) -> Response[Booking]:
        booking = await bookings.cancel(booking_id, _caller(request), cause_of(request.scope))
        return Response(booking, status_code=202, headers={"Location": f"{self.path}/{booking.id}"})

    @get(
        "/{booking_id:uuid}/history",
        summary="List what happened to a booking, oldest first, a page at a time",
    )
    async def booking_history(
        self,
        booking_id: FromPath[uuid.UUID],
        bookings: Bookings,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE_SIZE)] = 20,
        cursor: Annotated[str | None, QueryParameter(pattern=VERSION_CURSOR_PATTERN)] = None,
    ) -> BookingHistoryPage:
        return await bookings.booking_history(booking_id, limit=limit, cursor=cursor)


def _caller(request: Request[Any, Any, Any]) -> Caller:
    """The client asking to change a booking, as the authentication middleware found it."""
    principal = request.scope.get("user")
    if not isinstance(principal, Principal):
        raise NotAuthorizedException("a valid token is required")
    return Caller(principal.client_id, admin=ADMIN in principal.permissions)


def _position(last_event_id: str) -> int:
    """A ``Last-Event-ID`` as the store position it names."""
    if not (last_event_id.isascii() and last_event_id.isdigit() and len(last_event_id) <= 19):
        raise InvalidInput("Last-Event-ID must be the id of an event this stream sent")
    return int(last_event_id)
