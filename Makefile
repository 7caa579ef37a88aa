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
# Writes bench/results.md and bench/*.png; BENCH_ARGS go to bench.run_all (--help).
bench: $(STAMP)
	.venv/bin/python -c 'import matplotlib' 2>/dev/null || \
		.venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench]'
	@command -v socat >/dev/null || if [ "$$(id -u)" -eq 0 ]; then \
		echo "bench: installing socat (the TLS proxy peer of the tunnel throughput)"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get install -y -qq --no-install-recommends socat >/dev/null 2>&1 || \
		{ apt-get update -qq && apt-get install -y -qq --no-install-recommends socat >/dev/null; } || \
		echo "bench: socat could not be installed: its row is skipped"; \
	else echo "bench: socat missing and not root: the TLS proxy peer row is skipped"; fi
	.venv/bin/python -m bench.run_all $(BENCH_ARGS)

# Rewrite etc/node.conf from the key definitions (a test checks they agree).
sample-config: $(STAMP)
	.venv/bin/python -m qvd.db.sample_config > etc/node.conf

clean: stop
	rm -rf $(QVD_HOME)
