"""Real infrastructure for the tests: a MySQL-compatible server, a Kafka-protocol broker, the dev
OIDC server and HTTP services on free loopback ports, and the plain helpers the tests share
(fixtures stay in conftest.py). Each module holds one kind; import a name from its module."""
