"""Review: the in-memory booking records must refuse exactly the emails the ``customers``
column's collation (utf8mb4_unicode_ci) takes for one already registered, no more and no fewer,
or the fast use-case tests pass on code that production answers otherwise (201 against 409)."""

from __future__ import annotations

from tests.integration.test_booking_ports import customer, records  # noqa: F401 - its fixture
from ticketing.booking.ports import BookingRecords
from ticketing.shared.unit_of_work import AlreadyRecorded

# (registered first, registered next, whether the database takes them for one email)
PAIRS = [
    ("jose", "JOSÉ", True),  # accents are ignored as case is
    ("ada", "ａｄａ", True),  # full-width forms are their plain letters
    ("strasse", "straße", True),
    ("ab", "a\u200bb", True),  # an ignorable character
    ("ae", "æ", False),  # a letter of its own, not a ligature of two
    ("o", "ø", False),
    ("x\U0001f600", "x\U0001f601", True),  # every character past U+FFFF weighs alike
    ("a", "\U0001d400", False),  # so a mathematical A is no plain one
]


async def test_emails_the_collation_takes_for_one_are_refused_and_no_others(
    records: BookingRecords,  # noqa: F811
) -> None:
    refused: list[bool] = []
    for n, (first, second, _) in enumerate(PAIRS):
        domain = f"@d{n}.example.com"
        await customer(records, first + domain)
        try:
            await customer(records, second + domain)
        except AlreadyRecorded:
            refused.append(True)
        else:
            refused.append(False)
    assert refused == [same for _, _, same in PAIRS]
