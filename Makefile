# shopstream: `make demo` to see it work, `make test` to prove it.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: install demo test lint bench clean

# The Kinesis emulator the tests start (kinesis-local, from npm).
NODE_INSTALLED := node_modules/.installed

# Flink, Beam's Flink job server, Prism and the SDK harness's boot binary, in
# .tools/ (beam_pipelines/dev/local_flink.py says what each is). BEAM_VERSION must
# equal apache-beam's pin in pyproject.toml.
BEAM_VERSION := 2.62.0
FLINK_VERSION := 1.19.0
TOOLS := .tools
FLINK_INSTALLED := $(TOOLS)/flink-$(FLINK_VERSION)/.installed
JOB_SERVER_INSTALLED := $(TOOLS)/flink-job-server/.installed
GO_TOOLS_INSTALLED := $(TOOLS)/bin/.installed-$(BEAM_VERSION)
# The Kafka broker the tests and `shopstream dev kafka` start (jars from Maven Central).
KAFKA_INSTALLED := $(TOOLS)/kafka/.installed
BEAM_GO := github.com/apache/beam/sdks/v2
# The browser the report test renders report.html in (Debian's package: a system one).
CHROMIUM := /usr/bin/chromium

install: $(INSTALLED) $(NODE_INSTALLED) $(FLINK_INSTALLED) $(JOB_SERVER_INSTALLED) $(GO_TOOLS_INSTALLED) \
  $(KAFKA_INSTALLED) $(CHROMIUM)

$(CHROMIUM):
	$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) \
	  apt-get install -y -qq --no-install-recommends chromium

$(KAFKA_INSTALLED): deploy/kafka/broker-pom.xml
	rm -rf $(TOOLS)/kafka
	mvn -B -q -f deploy/kafka/broker-pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$(CURDIR)/$(TOOLS)/kafka/lib
	touch $@

$(JOB_SERVER_INSTALLED): deploy/flink/job-server-pom.xml $(INSTALLED)
	rm -rf $(TOOLS)/flink-job-server
	mvn -B -q -f deploy/flink/job-server-pom.xml dependency:copy-dependencies \
	  -DoutputDirectory=$(CURDIR)/$(TOOLS)/flink-job-server/lib
	$(BIN)/python -m beam_pipelines.dev.local_flink job-server-jar
	touch $@

# PyPI's apache-flink-libraries and apache-flink hold the distribution's
# lib/ and bin/ + conf/; nothing of them is installed into the venv.
$(FLINK_INSTALLED): $(INSTALLED)
	rm -rf $(TOOLS)/downloads
	$(BIN)/python -m pip download --quiet --no-deps -d $(TOOLS)/downloads \
	  apache-flink-libraries==$(FLINK_VERSION) apache-flink==$(FLINK_VERSION)
	$(BIN)/python -m beam_pipelines.dev.local_flink assemble-flink $(TOOLS)/downloads
	rm -rf $(TOOLS)/downloads
	touch $@

# Python's SDK harness launcher is the 'container' command of Beam's Go module.
$(GO_TOOLS_INSTALLED):
	mkdir -p $(TOOLS)/bin $(TOOLS)/go-build
	GOBIN=$(CURDIR)/$(TOOLS)/bin go install $(BEAM_GO)/go/cmd/prism@v$(BEAM_VERSION)
	GOBIN=$(CURDIR)/$(TOOLS)/go-build go install $(BEAM_GO)/python/container@v$(BEAM_VERSION)
	mv $(TOOLS)/go-build/container $(TOOLS)/bin/boot
	touch $@

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
# The demo's own salt (synthetic data): batch and streaming tables must share one.
demo: export SHOPSTREAM_PII_SALT ?= shopstream-demo-salt-not-secret
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
	$(BIN)/python -m beam_pipelines.dev.streaming_demo --workdir $(DEMO)/streaming

# The Flink tests run after the rest, one cluster at a time: a JobManager, a
# TaskManager and their SDK harnesses take both cores of a small machine.
test: install
	$(BIN)/ruff check transforms beam_pipelines tests benchmarks
	$(BIN)/ruff format --check transforms beam_pipelines tests benchmarks
	$(BIN)/python -m pytest -n 2 -q -m 'not flink'
	$(BIN)/python -m pytest -q -m flink

lint: install
	$(BIN)/ruff check transforms beam_pipelines tests benchmarks
	$(BIN)/ruff format --check transforms beam_pipelines tests benchmarks

bench: install
	$(BIN)/python benchmarks/batch_throughput.py --events 200000

clean:
	rm -rf $(VENV) $(DEMO) node_modules $(TOOLS) .pytest_cache *.egg-info
