# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install.stamp

.PHONY: demo test install system clean

system:
	bash scripts/install_system.sh

# The stamp holds the install's seconds, for the time budget `make demo` prints at its end.
$(STAMP): pyproject.toml scripts/install_system.sh
	@start=$$(date +%s); \
	bash scripts/install_system.sh && \
	$(PIP) install -q -e ".[all,dev]" && \
	echo "install_seconds=$$(( $$(date +%s) - start ))" > $(STAMP)

install: $(STAMP)

# MAKE_START: when this `make demo` began (set once per make run), so an earlier install counts 0 s.
MAKE_START := $(shell date +%s)

demo: install
	$(PYTHON) -m spoofrl demo --out demo-out
	@$(PYTHON) scripts/time_budget.py demo-out $(STAMP) $(MAKE_START)

test: install
	OMP_NUM_THREADS=2 $(PYTHON) -m pytest -q -m "not slow" tests

clean:
	rm -f $(STAMP)
