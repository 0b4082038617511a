# The two commands a new machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench lock clean test-npm ui-vendor

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.runtime: $(BIN)/python requirements.lock pyproject.toml
	$(BIN)/pip install --quiet -r requirements.lock
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.lock
	$(BIN)/pip install --quiet -r requirements-dev.lock
	touch $@

## run: migrate the SQLite database, add sample devices if it is empty, serve on :3201
run: $(VENV)/.runtime
	$(BIN)/iotsupport upgrade-db
	$(BIN)/iotsupport load-test-data --if-empty
	$(BIN)/iotsupport serve

## test: lint, type-check and run the test suite
test: $(VENV)/.dev lint test-npm
	# One worker per core (pytest-xdist). Bytecode is cached even where the environment
	# says not to: every worker and every server a test starts would compile it again.
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest -n auto

# What the tests take from npm, each folder with its own lock: the OpenID provider the
# login tests start (tests/oidc) and axe-core, the accessibility checker the UI tests
# inject (tests/axe). Without npm those tests skip.
NPM_DIRS := tests/oidc tests/axe
OIDC_DIR := tests/oidc
test-npm:
	@for dir in $(NPM_DIRS); do \
		if [ -f $$dir/node_modules/.installed ] && [ $$dir/node_modules/.installed -nt $$dir/package-lock.json ]; then :; \
		elif command -v npm >/dev/null; then \
			(cd $$dir && npm ci --no-audit --no-fund --loglevel=error && touch node_modules/.installed) || exit 1; \
		else echo "npm not found: the tests that need $$dir will be skipped"; fi; \
	done

lint: $(VENV)/.dev
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

## bench: the performance figures (needs wrk and PostgreSQL; see bench/run.py)
bench: $(VENV)/.runtime
	$(BIN)/python bench/run.py

## lock: re-pin dependencies after editing pyproject.toml
lock: $(VENV)/.dev
	$(BIN)/pip install --quiet uv
	$(BIN)/uv pip compile pyproject.toml -o requirements.lock --python-version 3.11 -q
	$(BIN)/uv pip compile pyproject.toml --extra dev -o requirements-dev.lock --python-version 3.11 -q

## ui-vendor: rebuild the editor's vendored bundle from ui-vendor/package-lock.json (needs Node.js 20+)
ui-vendor:
	cd ui-vendor && npm ci --no-audit --no-fund --loglevel=error && npm run --silent build

clean:
	rm -rf $(VENV) iotsupport.db iotsupport.db-wal iotsupport.db-shm $(addsuffix /node_modules,$(NPM_DIRS)) ui-vendor/node_modules
