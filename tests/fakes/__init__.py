"""In-memory stand-ins for the ports the services' use cases talk to, so that the use cases run
in fast unit tests (the SQL adapters and the HTTP clients are tested against the real things in
tests/integration). Each keeps the rules its real counterpart keeps: unique keys refuse a
second write, a reservation is decided by inventory's own pure ``decide``. One module per
service whose ports it stands in for; booking's status log and the dead-letter publisher have
theirs."""
