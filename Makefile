# netpol.fleet: every command a developer or CI needs, each doing its own set-up.
#   make demo   build the lab of network namespaces and run the main job on it
#   make test   unit, ansible-lint, integration, molecule, ansible-test sanity
# Integration tests, the lab and the demo need root (network namespaces).

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        ?= .venv
BIN         := $(VENV)/bin
INVENTORY   ?= inventories/lab
# ansible-test needs a real ansible_collections/<namespace>/<name> directory (it refuses the
# collection/ symlink) outside this git checkout (it lists files through git): the freshly built
# collection is installed there.
# One directory per checkout: two checkouts on one machine must not remove each other's.
SANITY_ROOT   ?= $(or $(TMPDIR),/tmp)/netpol-fleet-sanity-$(shell printf %s '$(CURDIR)' | md5sum | cut -c1-8)
SANITY_DIR    := $(SANITY_ROOT)/ansible_collections/netpol/fleet
SANITY_PYTHON ?= 3.11
# ansible-test keeps its virtualenvs under $$HOME/.ansible/test: a private home keeps concurrent
# runs from other checkouts out of ours. Its pip bootstrap is downloaded from a host that needs
# more than PyPI access; .ci/get_pip.py does the same from PyPI (pip 24.2 is what 2.19 pins).
SANITY_HOME   ?= $(CURDIR)/tests/output/sanity-home
SANITY_GET_PIP := $(SANITY_HOME)/.ansible/test/cache/get_pip_24_2.py
# pytest-xdist workers for the integration suite (each test owns its own namespaces).
JOBS        ?= auto
PYTEST_ARGS ?=
MOLECULE_SCENARIOS ?= default lockout bridge
# The real kube-apiserver the Kubernetes-source tests run against: built once from Debian's
# source package into a cache outside the clone (tests/kubernetes/build-apiserver.sh).
# The same cache holds the user-mode-linux kernel the UML tests boot (tests/uml/build-kernel.sh).
NETPOL_KUBE_CACHE ?= /var/cache/netpol-fleet
export NETPOL_KUBE_CACHE

# Debian packages the lab, the kernel backends and the SSH test need, and a command each one provides
# (sshd, ssh, socat: tests/integration drives the playbooks over real SSH into namespaces running sshd).
APT_PACKAGES  ?= iproute2 iptables nftables ipset ebtables conntrack openssh-server openssh-client socat
KERNEL_TOOLS  ?= ip iptables ip6tables nft ipset ebtables conntrack sshd ssh ssh-keygen socat
# What the integration tests need besides: a headless browser opens the HTML reachability report;
# user-mode-linux is Debian's Linux kernel run as a process (no conntrack zones: one test boots it
# for a real kernel's refusal; the others boot the kernel of `make uml-kernel`, tests/integration/uml.py).
TEST_APT_PACKAGES ?= chromium user-mode-linux
TEST_TOOLS        ?= chromium linux.uml
# The demo's HTML reachability report (self-contained: open it in any browser).
REPORT      ?= $(CURDIR)/netpol-reachability.html

export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_COLLECTIONS_PATH := $(CURDIR)/collection
export PATH := $(abspath $(BIN)):$(PATH)

PYTEST := $(BIN)/python -m pytest -p no:cacheprovider -r fEs

.PHONY: help venv python-deps deps test-deps kube-apiserver uml-kernel lab lab-down demo enforce verify remove unit integration molecule build sanity lint test clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

venv: $(VENV)/.installed  ## the virtualenv, (re)installed when the requirements change

$(VENV)/.installed: requirements.txt requirements-dev.txt
	@$(PYTHON) -c 'import ensurepip, venv' 2>/dev/null || $(MAKE) --no-print-directory python-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

python-deps:  # a Python that can create virtualenvs (Debian splits venv out)
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv

deps:  ## install the kernel tools and sshd the tests need (apt-get, only when one is missing)
	@missing=""; for tool in $(KERNEL_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

kube-apiserver:  ## build (once, ~30 min cold at nice 19) or reuse the test kube-apiserver; installs etcd-server
	tests/kubernetes/build-apiserver.sh

# Linux 6.1 as a program (ARCH=um) from Debian's linux-source-6.1, with what this machine's kernel
# cannot build (bridge vlan_filtering, 8021q devices) and what Debian's linux.uml lacks (conntrack
# zones, nf_tables for IPv4/IPv6). Cold: 12.6 CPU-minutes, 46 min measured at nice 19 on 2 cores busy
# with other test runs (about 7 on idle ones).
uml-kernel:  ## build (once, 7-46 min cold at nice 19) or reuse the UML test kernel; installs linux-source-6.1 and gcc
	tests/uml/build-kernel.sh

lab: deps venv  ## build (or converge) the lab of INVENTORY
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab.yml

lab-down: venv  ## tear the lab of INVENTORY down
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/lab.yml -e state=absent

demo: lab  ## build the lab, enforce its policies, compare real traffic with the simulator
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/demo.yml -e netpol_verify_report_file=$(REPORT)
	@echo "Reachability report: $(REPORT)"

enforce: venv  ## enforce INVENTORY's NetworkPolicies (playbooks/site.yml)
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/site.yml

verify: venv  ## measure who reaches whom on INVENTORY's declared ports
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/verify.yml

remove: venv  ## remove everything the collection owns from INVENTORY's hosts
	$(BIN)/ansible-playbook -i $(INVENTORY) playbooks/remove.yml

unit: venv  ## unit tests
	$(PYTEST) -q tests/unit $(PYTEST_ARGS)

test-deps:  ## install what the integration tests need besides the kernel tools (apt-get, only when missing)
	@missing=""; for tool in $(TEST_TOOLS); do command -v $$tool >/dev/null || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
		echo "missing:$$missing; installing $(TEST_APT_PACKAGES)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(TEST_APT_PACKAGES); \
	fi

integration: deps test-deps venv kube-apiserver uml-kernel  ## integration tests: real namespaces, real traffic, a real kube-apiserver, a UML kernel (root)
	$(PYTEST) -q -n $(JOBS) tests/integration $(PYTEST_ARGS)

# Each scenario prints its verdict on a line of its own (.ci/run's summary shows them).
molecule: deps venv  ## molecule scenarios (delegated driver over netns hosts, root)
	@for scenario in $(MOLECULE_SCENARIOS); do \
		if $(BIN)/molecule test -s $$scenario; then echo "molecule $$scenario: passed"; \
		else echo "molecule $$scenario: FAILED"; exit 1; fi; \
	done

build: venv  ## the collection tarball, as ansible-galaxy builds it (tests/output/dist)
	rm -rf tests/output/dist
	$(BIN)/ansible-galaxy collection build --output-path tests/output/dist

sanity: build  ## ansible-test sanity over exactly what the tarball ships
	rm -rf $(SANITY_ROOT)
	$(BIN)/ansible-galaxy collection install --force --no-deps -p $(SANITY_ROOT) tests/output/dist/netpol-fleet-*.tar.gz
	install -D -m 0644 .ci/get_pip.py $(SANITY_GET_PIP)
	cd $(SANITY_DIR) && if HOME=$(SANITY_HOME) $(abspath $(BIN))/ansible-test sanity --python $(SANITY_PYTHON) --venv --color no; \
		then echo "ansible-test sanity: passed"; else echo "ansible-test sanity: FAILED"; exit 1; fi

# ansible-lint reads .ansible-lint (profile production, the whole repository); the changelog
# fragments are linted too.
lint: venv  ## ansible-lint (production profile) over the repository, antsibull-changelog lint
	$(BIN)/ansible-lint --nocolor
	if $(BIN)/antsibull-changelog lint; then echo "antsibull-changelog lint: passed"; \
	else echo "antsibull-changelog lint: FAILED"; exit 1; fi

test: unit lint integration molecule sanity  ## everything CI runs

clean:  ## remove test output (not the virtualenv)
	rm -rf tests/output .pytest_cache $(SANITY_ROOT)
