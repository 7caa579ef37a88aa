# make run   - bring up a single-node system under QVD_HOME (default .qvd/), demo objects once
# make stop  - stop everything make run started
# make test  - run the whole test suite against real PostgreSQL
QVD_HOME ?= $(CURDIR)/.qvd
export QVD_HOME
STAMP := .venv/.installed

.PHONY: run stop test bench deps sample-config clean

$(STAMP): setup.cfg pyproject.toml scripts/install-deps.sh
	scripts/install-deps.sh
	touch $@

deps: $(STAMP)

run: $(STAMP)
	.venv/bin/qvd-admin system start

stop: $(STAMP)
	.venv/bin/qvd-admin system stop

test: $(STAMP)
	.venv/bin/python -m pytest $(PYTEST_ARGS)

# Benchmarks: figures against their floor measured in the same run (not part of make test).
bench: $(STAMP)
	.venv/bin/python -m bench.hkd_bench
	.venv/bin/python -m bench.l7r_bench
	.venv/bin/python -m bench.desktop_bench

# Rewrite etc/node.conf from the key definitions (a test checks they agree).
sample-config: $(STAMP)
	.venv/bin/python -m qvd.db.sample_config > etc/node.conf

clean: stop
	rm -rf $(QVD_HOME)
