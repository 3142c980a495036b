# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip
STAMP := .install.stamp

.PHONY: demo test install system clean

system:
	bash scripts/install_system.sh

$(STAMP): pyproject.toml scripts/install_system.sh
	bash scripts/install_system.sh
	$(PIP) install -q -e ".[all,dev]"
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(PYTHON) -m spoofrl demo

test: install
	OMP_NUM_THREADS=2 $(PYTHON) -m pytest -q -m "not slow" tests

clean:
	rm -f $(STAMP)
