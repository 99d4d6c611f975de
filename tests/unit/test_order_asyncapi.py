"""The AsyncAPI document says what order's consumer takes from the bookings topic: every type it
accepts, and nothing else (the document is built from the contracts, without a broker)."""

from __future__ import annotations

from ticketing.contracts.events import BOOKINGS_TOPIC
from ticketing.order.consumer import ACCEPTED
from ticketing.shared.messaging.asyncapi import asyncapi_document


def test_order_service_is_documented_as_consuming_every_type_it_accepts() -> None:
    document = asyncapi_document()
    (name,) = [
        name
        for name, operation in document["operations"].items()
        if operation["action"] == "receive" and name.startswith("order-service")
    ]
    assert document["channels"][name]["address"] == BOOKINGS_TOPIC
    payload = document["components"]["schemas"][f"{name}:Message:Payload"]
    documented = [ref["$ref"].rsplit("/", 1)[1] for ref in payload["anyOf"]]
    assert documented == [event.__name__ for event in ACCEPTED]
    for event in ACCEPTED:
        assert "message_id" in document["components"]["schemas"][event.__name__]["properties"]
