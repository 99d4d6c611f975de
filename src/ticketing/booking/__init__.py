"""Booking service: customers and their bookings. A booking is accepted at once as PENDING and
settled by the order saga's answer; a hold is then confirmed or expires, and a booking may be
cancelled (ADR 17)."""
