# The two commands a fresh machine needs: `make demo` and `make test`. Both set everything up first.
VENV ?= .venv
STAMP := $(VENV)/.cypher-installed
OUT ?= out/demo

.PHONY: setup demo test bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	@touch $(STAMP)

demo: setup
	$(VENV)/bin/cypher demo --out $(OUT)

test: setup
	bash scripts/run_tests.sh $(VENV)

clean:
	rm -rf out .pytest_cache
