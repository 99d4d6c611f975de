"""Order service: the order saga. Consumes booking requests, reserves at inventory, records the
order and publishes its verdict; gives a confirmed order's seats back when its booking is
cancelled or its hold expires. No public REST: health and metrics only."""
