# shopstream: `make demo` to see it work, `make test` to prove it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint bench clean

# The Kinesis emulator the tests start (kinesis-local, from npm).
NODE_INSTALLED := node_modules/.installed

install: $(INSTALLED) $(NODE_INSTALLED)

$(NODE_INSTALLED): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# Reinstalled whenever pyproject.toml changes.
$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

DEMO := demo
demo: install
	rm -rf $(DEMO)
	$(BIN)/shopstream generate --output $(DEMO)/sample --events 50000 --days 3
	$(BIN)/shopstream run --runner-config runner_configs/direct.yaml \
	  --source events-jsonl='$(DEMO)/sample/events-*.jsonl.gz' \
	  --source access-log=$(DEMO)/sample/access.log \
	  --source orders-csv=$(DEMO)/sample/orders.csv --orders-timezone Europe/London \
	  --source orders-fixed=$(DEMO)/sample/orders-fixed.txt --fixed-layout samples/orders-fixed/layout.yaml \
	  --source catalog-csv=$(DEMO)/sample/catalog.csv --source taxonomy=$(DEMO)/sample/taxonomy.txt \
	  --output $(DEMO)/tables
	$(BIN)/shopstream report --output $(DEMO)/tables
	$(BIN)/python -m beam_pipelines.streaming_demo --workdir $(DEMO)/streaming

test: install
	$(BIN)/ruff check transforms beam_pipelines tests benchmarks
	$(BIN)/ruff format --check transforms beam_pipelines tests benchmarks
	$(BIN)/python -m pytest -n 2 -q

lint: install
	$(BIN)/ruff check transforms beam_pipelines tests benchmarks
	$(BIN)/ruff format --check transforms beam_pipelines tests benchmarks

bench: install
	$(BIN)/python benchmarks/batch_throughput.py --events 200000

clean:
	rm -rf $(VENV) $(DEMO) node_modules .pytest_cache *.egg-info
