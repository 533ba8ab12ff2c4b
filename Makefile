# one-iscsi: `make demo` shows it working; `make test` sets up everything the tests need on a Debian machine
# (as root, or with sudo) and runs the whole suite. A second run reinstalls nothing.

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
APT_PKGS   := tgt open-iscsi libiscsi-bin lvm2 qemu-utils libnbd-bin e2fsprogs openssh-server sudo zsh fish tmux man-db groff-base
ROOT       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PYTEST_ARGS ?=

.PHONY: demo test e2e bench completions man conf dist deps system-deps venv clean

demo: deps
	tests/demo.sh

test: deps
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

# the package's bytecode, as an installed one-iscsi has it (pip compiles on install, an editable install
# does not): every one-iscsi the tests start would compile it again, ~30 ms each
deps: system-deps venv
	$(VENV)/bin/python -m compileall -q oneiscsi

system-deps:
	@dpkg-query -W -f='$${Status}\n' $(APT_PKGS) 2>/dev/null | grep -c '^install ok installed$$' \
	  | grep -qx "$(words $(APT_PKGS))" || { \
	  $(ROOT) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(ROOT) apt-get install -y -qq $(APT_PKGS); }

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

# the guest tier: a Debian guest under qemu as a real hypervisor host (image cached in /var/cache/one-iscsi-e2e)
E2E_APT_PKGS := qemu-system-x86 debootstrap debian-archive-keyring

e2e: deps
	@dpkg-query -W -f='$${Status}\n' $(E2E_APT_PKGS) 2>/dev/null | grep -c '^install ok installed$$' \
	  | grep -qx "$(words $(E2E_APT_PKGS))" || { $(ROOT) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(ROOT) apt-get install -y -qq --no-install-recommends $(E2E_APT_PKGS); }
	$(VENV)/bin/python -m pytest tests/e2e $(PYTEST_ARGS)

completions: venv
	$(VENV)/bin/python -m oneiscsi.completion completions

man: venv
	$(VENV)/bin/python -m oneiscsi.manpage man/one-iscsi.1

conf: venv
	$(VENV)/bin/python -m oneiscsi.config remotes/datastore/iscsi/iscsi.conf

# the benchmarks (bench/run.py): BENCH_ARGS=--quick for a smaller run, --only NAME for one benchmark;
# a full run rewrites README.md's Performance table
bench: deps
	$(VENV)/bin/python bench/run.py $(BENCH_ARGS)

dist: venv
	$(VENV)/bin/python -m pip install -q build
	rm -rf dist
	$(VENV)/bin/python -m build --outdir dist .

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
