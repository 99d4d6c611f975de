.PHONY: test check unit fmt clean

# The README's test command: installs everything, starts what the tests need, runs them all.
test:
	scripts/test.sh

# Fast feedback: unit tests only (no database, no broker).
unit:
	.venv/bin/pytest -m unit -q

check:
	.venv/bin/ruff check src tests scripts alembic
	.venv/bin/ruff format --check src tests scripts alembic
	.venv/bin/mypy
	.venv/bin/lint-imports

fmt:
	.venv/bin/ruff format src tests scripts alembic
	.venv/bin/ruff check --fix src tests scripts alembic

clean:
	rm -rf .venv .mypy_cache .ruff_cache .pytest_cache
