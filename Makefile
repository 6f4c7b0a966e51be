# orch: build, run, test and benchmark. `make test` is what CI runs
# (.ci/run) and must pass on a fresh Debian machine: it installs what it
# needs first (make deps).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

GO ?= go
BIN := bin
VERSION_PKG := github.com/orch-dev/orch/internal/version
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null || echo v0.0.0-dev)
GIT_COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)

# Static, stripped, reproducible. cgo stays on because libcontainer needs
# it; osusergo and netgo keep glibc's NSS (which cannot link statically)
# out of the binary. runc_nocriu leaves out libcontainer's checkpoint/
# restore (go-criu, ~0.7 MB), which orch never calls. urfave_cli_no_docs
# leaves out urfave/cli's Markdown and man page generators (and their
# Markdown libraries, ~0.3 MB), which orch never calls either.
TAGS := osusergo,netgo,runc_nocriu,urfave_cli_no_docs
LDFLAGS := -s -w -extldflags -static \
	-X $(VERSION_PKG).Version=$(VERSION) \
	-X $(VERSION_PKG).GitCommit=$(GIT_COMMIT)
GOBUILD := CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)'
# bin/orch embeds runtime/helper, the container shim and init alone
# (6.5 MB, 2.7 MB gzipped, so bin/orch grows by 2.7 MB): every container
# starts it twice (shim, then libcontainer's init), in about a third of the
# CPU the whole binary takes to start (runtime/container/helper.go).
# Without the orchhelper tag (go build, go test) shims run the whole binary.
HELPER := runtime/container/helperbin/orch-helper
ARCH := $(shell $(GO) env GOARCH)
GOBUILD_ORCH := CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS),orchhelper -ldflags '$(LDFLAGS)'

TEST_TIMEOUT ?= 20m
RACE_PACKAGES := ./store/... ./server/apiserver/... ./server/controllers/...
BENCH_OUT ?= bench-results.md

.PHONY: all deps build build-arm64 size run test bench clean

all: build

deps:
	scripts/install-deps.sh

build:
	$(GOBUILD) -o $(HELPER)-$(ARCH) ./runtime/helper
	gzip -9 -n -f $(HELPER)-$(ARCH)
	$(GOBUILD_ORCH) -o $(BIN)/orch .

build-arm64:
	CC=aarch64-linux-gnu-gcc GOARCH=arm64 $(GOBUILD) -o $(HELPER)-arm64 ./runtime/helper
	gzip -9 -n -f $(HELPER)-arm64
	CC=aarch64-linux-gnu-gcc GOARCH=arm64 $(GOBUILD_ORCH) -o $(BIN)/orch-arm64 .

# The binary's size, and what keeps the linker from pruning methods: any
# reachable function marked <ReflectMethod> (reflect's Method or
# MethodByName with a non-constant name, e.g. text/template) makes it keep
# every exported method of every reachable type, several MB here. The list
# is empty when pruning works; its first entries name the cause.
size: build
	@stat -c '%s bytes %n' $(BIN)/orch
	@CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS) -ldflags=-dumpdep -o /dev/null . 2>&1 | \
	  grep -o '^[^ ]* <ReflectMethod>' | awk '!seen[$$0]++' || echo 'no <ReflectMethod> reachable'

# orch server writes to /var/lib/orch and /etc/orch: run it as root.
# Extra flags: make run ARGS='--debug'
run: build
	$(BIN)/orch server $(ARGS)

# Unit, integration and end-to-end tests. Integration tests that need the
# real binary find it through ORCH_BIN.
test: deps build
	@echo '== gofmt'
	@unformatted=$$(gofmt -l $$(find . -name '*.go' -not -path './.git/*')); \
	if [[ -n "$$unformatted" ]]; then echo "gofmt needed on:"; echo "$$unformatted"; exit 1; fi
	@echo '== go vet'
	$(GO) vet ./...
	@echo '== go test'
	ORCH_BIN=$(CURDIR)/$(BIN)/orch $(GO) test -timeout $(TEST_TIMEOUT) ./...
	@echo '== go test -race'
	ORCH_BIN=$(CURDIR)/$(BIN)/orch $(GO) test -race -timeout $(TEST_TIMEOUT) $(RACE_PACKAGES)
	@echo '== arm64 smoke test'
	$(MAKE) --no-print-directory build-arm64
	qemu-aarch64-static $(BIN)/orch-arm64 version

# Benchmarks are not tests: they print numbers (beside their peers') and
# append them to $(BENCH_OUT); nothing here passes or fails on timing.
bench: deps build build-arm64
	@{ echo; echo "## $$(date -u +%Y-%m-%dT%H:%MZ) $$(uname -m), $$(nproc) cores, $$(git rev-parse --short HEAD)"; \
	  echo; echo "bin/orch $$(stat -c %s $(BIN)/orch) bytes, bin/orch-arm64 $$(stat -c %s $(BIN)/orch-arm64) bytes"; } | tee -a $(BENCH_OUT)
	@for b in storebench apibench scalebench clusterbench podbench dnsbench netbench; do \
	  if [[ -d internal/bench/$$b ]]; then \
	    echo "== $$b"; $(GO) run ./internal/bench/$$b | tee -a $(BENCH_OUT); \
	  fi; \
	done

clean:
	rm -rf $(BIN) coverage.out coverage.html $(HELPER)-*
	find . -name '*.test' -type f -delete
