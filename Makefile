.PHONY: up test chaos bench bench-tracing check unit fmt seed compose-config clean

# The README's run command: installs what is missing and runs the whole system (Ctrl-C stops).
up:
	scripts/up.sh

# Demo venues, events and customers (idempotent), for a running or migrated system.
seed:
	.venv/bin/ticketing seed --demo

# Validate the compose deployment (needs docker-compose, not a Docker engine).
compose-config:
	docker-compose -f deploy/compose.yml config -q

# The README's test command: installs everything, starts what the tests need, runs them all.
test:
	scripts/test.sh

# The resilience suite at full length (the test run includes a short version of it).
chaos:
	TICKETING_CHAOS_SCALE=full .venv/bin/pytest tests/e2e/test_chaos.py -v

# Benchmarks (not tests): throughput, latency, relay, flash sale, memory -> docs/benchmarks.md,
# with pictures of them in docs/img/ (matplotlib, installed by the script).
bench:
	scripts/bench.sh

# What tracing costs when on (sampler ratio 0.1), in alternating runs against it off -> the
# tracing part of docs/benchmarks-ab.md, written by hand from the printed figures.
bench-tracing:
	command -v wrk >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk)
	.venv/bin/python -m benchmarks.ab --scenario accept --rounds 3 --seconds 20 --otlp-sink \
		--variant "" --variant "OTEL_EXPORTER_OTLP_ENDPOINT={sink},OTEL_TRACES_SAMPLER=parentbased_traceidratio,OTEL_TRACES_SAMPLER_ARG=0.1"

# Fast feedback: unit tests only (no database, no broker).
unit:
	.venv/bin/pytest -m unit -q

check:
	.venv/bin/ruff check src tests scripts alembic benchmarks
	.venv/bin/ruff format --check src tests scripts alembic benchmarks
	.venv/bin/mypy
	.venv/bin/lint-imports

fmt:
	.venv/bin/ruff format src tests scripts alembic benchmarks
	.venv/bin/ruff check --fix src tests scripts alembic benchmarks

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
