"""Order service: the order saga. Consumes booking requests, reserves at inventory, records the
order and publishes the outcome; gives a confirmed order's seats back when its booking is
cancelled or its hold expires. No public REST: health and metrics only."""
