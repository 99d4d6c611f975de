"""One Idempotency-Key, one booking, per client: keys differing in case or in bytes are different
keys, each client has keys of its own (whatever the length of its id), and recording a key's
answer reads one row (real MariaDB, real inventory over HTTP)."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tests.harness.serving import Stack, bearer
from tests.integration.flow import book, bookings_of, setup_sale
from ticketing.booking import idempotency
from ticketing.booking.idempotency import KeyClaim
from ticketing.booking.tables import idempotency_keys
from ticketing.shared.db import sql


async def test_keys_differing_in_case_are_different_keys(stack: Stack) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    key = f"case-{uuid.uuid4().hex}"
    lower = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key.lower()})
    upper = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key.upper()})
    assert lower.status_code == upper.status_code == 202, upper.text
    assert "idempotent-replayed" not in upper.headers
    assert lower.json()["id"] != upper.json()["id"]
    again = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key.upper()})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.content == upper.content
    assert len(await bookings_of(stack, event_id)) == 2


async def test_two_clients_with_one_key_get_bookings_of_their_own(
    stack: Stack, tokens: dict[str, str]
) -> None:
    customer_id, event_id = await setup_sale(stack, capacity=10)
    key = f"shared-{uuid.uuid4()}"
    admin = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key})
    other_client = {"Idempotency-Key": key, **bearer(tokens["client"])}
    client = await book(stack, customer_id, event_id, 1, **other_client)
    assert admin.status_code == client.status_code == 202, client.text
    assert "idempotent-replayed" not in client.headers
    assert admin.json()["id"] != client.json()["id"]
    # A different body under the same key is that client's business alone.
    other_body = await book(stack, customer_id, event_id, 2, **other_client)
    assert other_body.status_code == 422
    replay = await book(stack, customer_id, event_id, 1, **{"Idempotency-Key": key})
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.content == admin.content
    assert len(await bookings_of(stack, event_id)) == 2


async def test_keys_and_clients_are_compared_byte_for_byte(stack: Stack) -> None:
    """Keys that a case-insensitive, space-padded collation would take for one are all
    different, and so is one key of two clients (or of two client ids differing in case)."""
    tag = uuid.uuid4().hex
    keys = [f"{tag}-abc", f"{tag}-ABC", f"{tag}-abc ", f"{tag}-\u00df", f"{tag}-ss"]
    clients = ["ticketing-admin", "Ticketing-Admin", "ticketing-client"]
    async with stack.engines["booking"].begin() as conn:
        for client in clients:
            for key in keys:
                assert await idempotency.claim_key(conn, KeyClaim.new(client, key), "f"), (
                    client,
                    key,
                )
        assert not await idempotency.claim_key(conn, KeyClaim.new(clients[0], keys[0]), "f")
        found = await conn.scalar(
            select(func.count())
            .select_from(idempotency_keys)
            .where(idempotency_keys.c.idem_key.startswith(tag))
        )
    assert found == len(keys) * len(clients)


async def rows_scanned(conn: AsyncConnection) -> int:
    """Rows this connection has read in table scans so far."""
    status = text("SHOW SESSION STATUS LIKE 'Handler_read_rnd_next'")
    return int((await conn.execute(status)).one()[1])


async def test_recording_one_answer_reads_one_row_not_the_whole_table(stack: Stack) -> None:
    """A booking committed alone records its key's answer with one completion: MariaDB ran the
    one-row ``(a, b, c) IN ((...))`` form as a scan of every key."""
    claims = [KeyClaim.new("scan-test", f"key-{uuid.uuid4().hex}") for _ in range(300)]
    async with stack.engines["booking"].begin() as conn:
        for claim in claims:
            assert await idempotency.claim_key(conn, claim, "f")
    done = idempotency.Completion(claims[0], uuid.uuid4(), "{}")
    async with stack.engines["booking"].begin() as conn:
        before = await rows_scanned(conn)
        changed = await sql.run(conn, idempotency.complete_keys_statement([done]))
        after = await rows_scanned(conn)
    assert changed == 1
    assert after - before < 10  # a table scan reads every row of the table


async def test_a_client_id_of_any_length_can_hold_keys(stack: Stack) -> None:
    long_client = "c" * 5000  # tokens put no limit on azp
    async with stack.engines["booking"].begin() as conn:
        assert await idempotency.claim_key(conn, KeyClaim.new(long_client, "k"), "f")
        assert not await idempotency.claim_key(conn, KeyClaim.new(long_client, "k"), "f")
        assert await idempotency.claim_key(conn, KeyClaim.new(long_client + "x", "k"), "f")
