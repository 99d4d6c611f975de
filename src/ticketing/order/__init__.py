"""Order service: the order saga. Consumes booking requests, reserves at inventory, records the
order and publishes the outcome. No public REST: health and metrics only."""
