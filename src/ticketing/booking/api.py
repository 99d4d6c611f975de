"""Booking's HTTP entrypoints: translate requests, delegate to the service layer."""

from __future__ import annotations

import functools
import uuid
from typing import Annotated, Any

import msgspec
from litestar import Controller, Litestar, Request, Response, asgi, get, post
from litestar.di import NamedDependency, Provide
from litestar.exceptions import (
    ClientException,
    MethodNotAllowedException,
    NotAuthorizedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import Stream
from litestar.types import Receive, Scope, Send

from ticketing.booking.lifecycle import Caller
from ticketing.booking.push import StatusPush
from ticketing.booking.service import BookingService
from ticketing.contracts.booking import (
    MAX_WAIT_SECONDS,
    Booking,
    BookingCreate,
    BookingHistoryPage,
    BookingPage,
    Customer,
    CustomerCreate,
)
from ticketing.shared.auth import Principal
from ticketing.shared.body import read_body
from ticketing.shared.disconnect import CALLER_LEFT, until_caller_leaves
from ticketing.shared.errors import InvalidInput
from ticketing.shared.history import AS_OF, parse_as_of
from ticketing.shared.pagination import CURSOR_PATTERN, VERSION_CURSOR_PATTERN
from ticketing.shared.security import cause_of, requires

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
MAX_IDEMPOTENCY_KEY = 255


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
        max_length=MAX_IDEMPOTENCY_KEY,
        description="Repeat a request safely: the same key and body return the first answer. "
        "Keys are compared byte for byte and are each client's own.",
        required=False,
    ),
]


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
        client = cause_of(request.scope).actor
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
        with push.limit.held(cause_of(request.scope).actor):
            async with until_caller_leaves(request.receive):
                read = functools.partial(bookings.get_booking, booking_id)
                settled.append(await push.feed.settled(booking_id, read, wait))
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


# Requesting a booking ----------------------------------------------------------------------
#
# The busiest endpoint runs as a bare ASGI route (ADR 9): Litestar still routes it,
# authenticates the caller, checks the permission and maps every error to a problem, but the
# body is decoded by msgspec and the answer sent directly, without Litestar's per-request
# parameter model, dependency injection and response object (73 against 26 µs a request in
# process; a tenth of a booking's CPU across the system). The contract is the one documented
# by RequestBookingDocs below: the body is a BookingCreate, decoded as Litestar decodes a JSON
# body (lax, so that "2" is 2), and what does not fit is refused with the same statuses.

_booking_create = msgspec.json.Decoder(BookingCreate, strict=False)
ALLOWED = "OPTIONS, POST"


@asgi(BOOKINGS_PATH, copy_scope=False, opt=requires(WRITE))
async def request_booking(scope: Scope, receive: Receive, send: Send) -> None:
    """Request tickets: 202 with the PENDING booking; it settles through the order saga."""
    method = scope.get("method", "")
    if method == "OPTIONS":
        await _answer(send, 204, b"", [(b"allow", ALLOWED.encode())])
        return
    if method != "POST":
        raise MethodNotAllowedException(headers={"Allow": ALLOWED})
    state = scope["litestar_app"].state
    key = _idempotency_key(scope)
    body = await read_body(receive, state.settings.max_request_body_bytes)
    service: BookingService = state.bookings
    accepted = await service.request_booking(
        _decode(body),
        raw_body=body,
        cause=cause_of(scope),  # the caller's client, set by the authentication middleware
        idempotency_key=key,
    )
    headers = [(b"location", f"{BOOKINGS_PATH}/{accepted.booking_id}".encode())]
    if accepted.replayed:
        headers.append((b"idempotent-replayed", b"true"))
    # The stored JSON is sent as it is, so that a replay is byte for byte the first answer.
    await _answer(send, 202, accepted.body, headers, content_type=b"application/json")


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


def _invalid(message: str, *, source: str, key: str | None = None) -> ValidationException:
    """A refusal that Litestar's exception handler maps to a 400 problem naming the field
    (``key``, or the path msgspec writes into ``message``)."""
    error = {"message": message, "source": source}
    if key is not None:
        error["key"] = key
    return ValidationException(f"Validation failed for POST {BOOKINGS_PATH}", extra=[error])


def _decode(body: bytes) -> BookingCreate:
    if not body:
        raise _invalid("a JSON body is required", source="body", key="body")
    try:
        return _booking_create.decode(body)
    except msgspec.ValidationError as error:
        raise _invalid(str(error), source="body") from None
    except msgspec.DecodeError as error:
        raise ClientException(f"the body is not valid JSON: {error}") from None


def _idempotency_key(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == b"idempotency-key":
            key = value.decode("latin-1")
            if not 1 <= len(key) <= MAX_IDEMPOTENCY_KEY:
                raise _invalid(
                    f"must be 1 to {MAX_IDEMPOTENCY_KEY} characters",
                    source="header",
                    key="Idempotency-Key",
                )
            return key
    return None


async def _answer(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]],
    *,
    content_type: bytes | None = None,
) -> None:
    head = [*headers, (b"content-length", str(len(body)).encode())]
    if content_type is not None:
        head.append((b"content-type", content_type))
    await send({"type": "http.response.start", "status": status, "headers": head})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class RequestBookingDocs(Controller):
    """The OpenAPI operation of :func:`request_booking`, for the schema only: never served.

    Litestar documents only its own handlers, so this signature states the contract the ASGI
    route implements; :func:`document_request_booking` copies the operation it yields into the
    served schema.
    """

    path = BOOKINGS_PATH
    tags = ["bookings"]

    @post(
        "/",
        status_code=202,
        summary="Request tickets; the booking settles to CONFIRMED (HELD, for a hold) or "
        "REJECTED shortly",
        opt=requires(WRITE),
    )
    async def request_booking(
        self, data: JSONBody[BookingCreate], idempotency_key: IdempotencyKey = None
    ) -> Response[Booking]:
        raise NotImplementedError("documentation only: served by the ASGI route")


def document_request_booking(app: Litestar) -> None:
    """Put the operation :class:`RequestBookingDocs` yields into ``app``'s OpenAPI schema, with
    the component schemas it refers to (run on startup, once every route is registered)."""
    documented = Litestar([RequestBookingDocs], openapi_config=app.openapi_config).openapi_schema
    schema = app.openapi_schema
    if schema.paths is None or documented.paths is None:
        raise RuntimeError("no paths in the OpenAPI schema")
    schema.paths[BOOKINGS_PATH] = documented.paths[BOOKINGS_PATH]
    known = schema.components.schemas
    for name, component in documented.components.schemas.items():
        known.setdefault(name, component)
