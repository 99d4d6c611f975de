"""The busiest endpoint, requesting a booking, as a bare ASGI route (ADR 9): Litestar still
routes it, authenticates the caller, checks the permission and maps every error to a problem,
but the body is decoded by msgspec and the answer sent directly, so that each request skips
Litestar's parameter model, dependency injection and response object. The contract is the one
documented by :class:`RequestBookingDocs`: the body is a BookingCreate, decoded as Litestar
decodes a JSON body (lax, so that "2" is 2), and what does not fit is refused with the same
statuses."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Controller, Litestar, Response, asgi, post
from litestar.exceptions import ClientException, MethodNotAllowedException, ValidationException
from litestar.params import HeaderParameter, JSONBody
from litestar.types import Receive, Scope, Send

from ticketing.booking.api.controllers import BOOKINGS_PATH, WRITE
from ticketing.booking.service import BookingService
from ticketing.contracts.booking import Booking, BookingCreate
from ticketing.shared.auth.middleware import cause_of, requires
from ticketing.shared.http.body import read_body

MAX_IDEMPOTENCY_KEY = 255
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
    accepted = await service.requests.request_booking(
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
