"""Inventory's service on in-memory records, and the cause its unit tests act with."""

from __future__ import annotations

from tests.fakes.inventory import InMemoryInventoryRecords
from ticketing.inventory.service import InventoryService
from ticketing.shared.store.eventstore import Cause

CAUSE = Cause(actor="admin", correlation_id="request-1", causation_id="request-1")


def service() -> tuple[InventoryService, InMemoryInventoryRecords]:
    records = InMemoryInventoryRecords()
    return InventoryService(records), records
