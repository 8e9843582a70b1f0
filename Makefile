# clawrun build, test and benchmark entry points.
# clawrun is linked statically: without clawrun-launch (static, no cgo) it
# runs inside containers as the policy launcher, where neither a loader nor
# the host's libc exists.

PREFIX     ?= /usr/local
BINDIR     ?= $(PREFIX)/bin
GO         ?= go
VERSION    ?= $(shell cat VERSION 2>/dev/null || echo 0.0.0-dev)
COMMIT     ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
TAGS       := seccomp netgo osusergo urfave_cli_no_docs
LDFLAGS    := -s -w -linkmode external -extldflags '-static' \
              -X github.com/clawrun/clawrun/runtime.Version=$(VERSION) \
              -X github.com/clawrun/clawrun/runtime.Commit=$(COMMIT)
GOBUILD    := CGO_ENABLED=1 $(GO) build -trimpath -tags '$(TAGS)' -ldflags "$(LDFLAGS)"
# Every go test of `make test` runs through test/tools/testrun, which keeps
# the skipped tests in SKIPLOG; `make test` lists them at its end and fails
# on a skip that is not allowed (README.md, Tests).
TESTRUN    := bin/testrun
SKIPLOG    ?= $(CURDIR)/bin/skipped-tests.jsonl
GOTEST     := $(TESTRUN) run -log $(SKIPLOG)
# The packages with fuzzers, found rather than listed: a new one is fuzzed
# by make unit without a change here.
FUZZ_PKGS  = $(sort $(patsubst %/,./%,$(dir $(shell grep -rl --include='*_test.go' '^func Fuzz' cmd egress landlock runtime seccomp shim 2>/dev/null))))

.PHONY: all deps build install test unit integration integration-runc soak conformance bench lint demo demo-check e2e clean

all: build

# Debian packages for building and testing (installs only what is missing).
deps:
	bash contrib/install-deps.sh

build:
	$(GOBUILD) -o bin/clawrun ./cmd/clawrun
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/containerd-shim-clawrun-v2 ./cmd/containerd-shim-clawrun-v2
	CGO_ENABLED=0 $(GO) build -trimpath -tags 'netgo osusergo' -ldflags "-s -w" -o bin/clawrun-egress ./cmd/clawrun-egress
	CGO_ENABLED=0 $(GO) build -trimpath -tags 'netgo osusergo' -ldflags "-s -w" -o bin/clawrun-egress-worker ./cmd/clawrun-egress-worker
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/clawrun-deploy ./cmd/clawrun-deploy
	$(GOBUILD) -o bin/clawrun-metrics ./cmd/clawrun-metrics
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w" -o bin/clawrun-launch ./cmd/clawrun-launch

install: build
	install -D -m 0755 bin/clawrun $(DESTDIR)$(BINDIR)/clawrun
	install -D -m 0755 bin/containerd-shim-clawrun-v2 $(DESTDIR)$(BINDIR)/containerd-shim-clawrun-v2
	install -D -m 0755 bin/clawrun-egress $(DESTDIR)$(BINDIR)/clawrun-egress
	install -D -m 0755 bin/clawrun-egress-worker $(DESTDIR)$(BINDIR)/clawrun-egress-worker
	install -D -m 0755 bin/clawrun-metrics $(DESTDIR)$(BINDIR)/clawrun-metrics
	install -D -m 0755 bin/clawrun-launch $(DESTDIR)$(BINDIR)/clawrun-launch

# Everything CI runs; then every skipped test, and a failure if one was
# skipped for a reason that is not allowed.
test: deps lint build
	@rm -f $(SKIPLOG)
	@rc=0; $(MAKE) --no-print-directory unit integration integration-runc demo-check conformance e2e || rc=$$?; \
	  echo "== make test: skipped tests (all go test runs)"; \
	  $(TESTRUN) report $(SKIPLOG) || rc=1; \
	  exit $$rc

unit: $(TESTRUN)
	CGO_ENABLED=1 $(GOTEST) -- $(GO) test -race -tags '$(TAGS)' -count=1 $$($(GO) list ./... | grep -v /test/) ./test/bench/stats ./test/bench/benchdoc ./test/tools/testrun
	# Every fuzzer (a func Fuzz... of a package's tests: the policy parser,
	# host names, the ClientHello and HTTP parsers, the DNS resolver), for
	# a bounded number of inputs (a time bound can end it mid-minimisation,
	# which go test reports as a failure: "context deadline exceeded").
	for p in $(FUZZ_PKGS); do \
	  for f in $$($(GO) test -list '^Fuzz' $$p | grep '^Fuzz'); do \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 100000x $$p || exit 1; \
	  done; \
	done

# A Debian root filesystem (test/mkdebian.sh, cached) for the policy tests
# on a real distribution's userland. The fake internet's own tests
# (test/fakenet) need root as well.
integration: build $(TESTRUN)
	debian=$$(bash test/mkdebian.sh) && \
	  CLAWRUN=$(CURDIR)/bin/clawrun CLAWRUN_DEBIAN_ROOTFS=$$debian CGO_ENABLED=1 $(GOTEST) -v -- $(GO) test -race -tags '$(TAGS)' -count=1 -timeout 40m ./test/integration/... ./test/fakenet

# The same suite against runc v1.5.2: the runc behaviour it expects of
# clawrun is runc's (tests of clawrun's own features skip, "not clawrun: ").
integration-runc: bin/runc-1.5.2 $(TESTRUN)
	debian=$$(bash test/mkdebian.sh) && \
	  CLAWRUN=$(CURDIR)/bin/runc-1.5.2 CLAWRUN_DEBIAN_ROOTFS=$$debian CGO_ENABLED=1 $(GOTEST) -v -- $(GO) test -race -tags '$(TAGS)' -count=1 -timeout 20m ./test/integration/...

# 1,000 create/start/exec/kill/delete cycles under agent-default with an
# egress filter, one at a time and 50 at once, then a check that nothing
# is left (make integration runs 100); then `clawrun create` and `clawrun
# delete` SIGKILLed at random points, SOAK_KILLS times each, with and
# without a filter (make integration runs 30 and 24).
SOAK_CYCLES ?= 1000
SOAK_KILLS ?= 300
soak: build
	CLAWRUN=$(CURDIR)/bin/clawrun CLAWRUN_SOAK_CYCLES=$(SOAK_CYCLES) \
	  CLAWRUN_CREATE_KILLS=$(SOAK_KILLS) CLAWRUN_DELETE_KILLS=$(SOAK_KILLS) \
	  CGO_ENABLED=1 $(GO) test -tags '$(TAGS)' -count=1 -v -timeout 180m \
	  -run '^(TestSoak|TestEgressCreateKilled|TestEgressDeleteKilled)$$' ./test/integration/

# Two judges of runc compatibility, each against runc v1.5.2 on this
# machine: the OCI runtime-tools suite and runc's own integration suite
# (bats). Both run even if the first fails.
conformance: build bin/runc-1.5.2
	rc=0; CLAWRUN=$(CURDIR)/bin/clawrun bash test/conformance/run.sh || rc=1; \
	  CLAWRUN=$(CURDIR)/bin/clawrun bash test/conformance/runc-bats.sh || rc=1; \
	  exit $$rc

# The benchmarks, then their output pasted into README.md as it is
# (test/bench/benchdoc; a unit test fails if that block is edited by hand).
bench: build bin/runc-1.5.2
	CLAWRUN=$(CURDIR)/bin/clawrun BENCH_OUT=bin/bench-start.md BENCH_BURST_OUT=bin/bench-burst.md bash test/bench/run.sh
	CLAWRUN=$(CURDIR)/bin/clawrun BENCH_EGRESS_OUT=bin/bench-egress.md bash test/bench/egress.sh
	# Pod start-up on the end-to-end tests' Kubernetes cluster (build tag
	# kubebench: not part of make e2e).
	tools=$$(E2E_TOOLS=$(E2E_TOOLS) bash test/e2e/setup.sh) && \
	  E2E_TOOLS=$$tools CLAWRUN_BIN=$(CURDIR)/bin RUNC_152=$(CURDIR)/bin/runc-1.5.2 KUBE_BENCH_OUT=$(CURDIR)/bin/bench-kube.md \
	  CGO_ENABLED=1 $(GO) test -tags '$(TAGS) kubebench' -count=1 -timeout 60m -v -run '^TestKubeStartBench$$' ./test/e2e/
	$(GO) run ./test/bench/benchdoc -readme README.md bin/bench-start.md bin/bench-burst.md bin/bench-egress.md bin/bench-kube.md

demo: deps build
	bash contrib/demo/demo.sh

# End-to-end: the real front-ends (dockerd 20.10 and moby v2, containerd 2.2
# with ctr, nerdctl and CRI, a Kubernetes cluster) run clawrun.
# test/e2e/setup.sh installs and builds them once into E2E_TOOLS (default
# /var/cache/clawrun-ci/e2e-<pins>). E2E_RUN picks tests (go test -run):
# `make e2e E2E_RUN=TestKube` runs the Kubernetes cluster's alone.
E2E_RUN ?=
e2e: build $(TESTRUN)
	tools=$$(E2E_TOOLS=$(E2E_TOOLS) bash test/e2e/setup.sh) && \
	  E2E_TOOLS=$$tools CLAWRUN_BIN=$(CURDIR)/bin CGO_ENABLED=1 $(GOTEST) -v -- $(GO) test -tags '$(TAGS)' -count=1 -timeout 20m -run '$(E2E_RUN)' ./test/e2e/

# The demo's verdicts, checked (part of make test).
demo-check: build
	CLAWRUN=$(CURDIR)/bin/clawrun bash test/demo_check.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	CGO_ENABLED=1 $(GO) vet -tags '$(TAGS) kubebench' ./...
	@# A grep -q at the end of a pipe exits at its first match and the
	@# writer dies of SIGPIPE, which pipefail turns into a failure that
	@# comes and goes with the scheduler: match here-strings or files.
	@out=$$(git grep -nE '\|[[:space:]]*grep[[:space:]]+(-[[:alnum:]]*q|--quiet)' -- '*.sh' .ci/run Makefile | grep -v '^Makefile:.*git grep' || true); \
	  if [ -n "$$out" ]; then echo "a pipe into grep -q (use <<<\"\$$var\" or a file):"; echo "$$out"; exit 1; fi

clean:
	rm -rf bin

$(TESTRUN): $(wildcard test/tools/testrun/*.go)
	CGO_ENABLED=0 $(GO) build -trimpath -o $@ ./test/tools/testrun

# The reference runtime: runc built from the libcontainer version clawrun uses.
bin/runc-1.5.2: go.mod
	CGO_ENABLED=1 $(GO) build -trimpath -tags seccomp -o $@ github.com/opencontainers/runc
