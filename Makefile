# voice-notify: `make demo` runs today's campaign locally, `make test` runs the suite.
# Both create .venv and install what is missing (a no-op when up to date).

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# default-libmysqlclient-dev and pkg-config: mysqlclient (the MySQL provider) builds on them.
# sip-tester: SIPp, the carrier in the SIP tests (tests/gateway/sip/scenarios).
SYSTEM_PACKAGES := espeak-ng sox baresip-core sip-tester chromium default-libmysqlclient-dev pkg-config

# Passed through to the demo: GATEWAY_FAULTS (simulator fault mix, see README).
export GATEWAY_FAULTS
# The development harness (voice_notify_dev: demo, simulator, benchmarks) is not
# installed with the product; it runs from the checkout.
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: demo test lint system-deps install clean-demo eval-text bench-text bench-synthesis bench-writeback

$(STAMP): requirements.txt pyproject.toml | system-deps
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	$(PY) -m pip install -q --no-deps -e .
	@touch $(STAMP)

install: system-deps $(STAMP)

system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing system packages:$$missing"; \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

demo: install
	$(PY) -m voice_notify_dev.demo $(if $(DATE),--date $(DATE)) $(if $(GATEWAY),--gateway $(GATEWAY))

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

# CRM write-back of 100,000 outcomes into PostgreSQL, bulk vs row by row.
bench-writeback: install
	$(PY) -m voice_notify_dev.bench_writeback

# Synthesis worker figures (printed): overhead per item on a 500-item espeak-ng batch,
# segment-cache share on the demo campaign, speaker-similarity calibration.
bench-synthesis: install
	$(PY) -m voice_notify_dev.bench_synthesis all
