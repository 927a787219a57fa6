# Coral — kubectl plugin that prefetches images and artifacts onto nodes.
SHELL := /usr/bin/env bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
REGISTRY ?=
WORKER_REPO ?= coral-worker
PKG := github.com/coral-dev/coral
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Commit=$(COMMIT)


.PHONY: build test e2e check cluster-up cluster-down demo jobimage jobimage-push worker-size bench-prefetch fmt vet

build: ## bin/kubectl-coral
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kubectl-coral ./cmd/kubectl-coral

# The tests start real servers; hack/install-test-servers.sh installs them
# (once, cached; a second run does nothing) and prints versitygw's path. A
# test whose server is missing fails and says how to install it; CORAL_SKIP_S3=1
# skips the S3 tests on purpose (and their install).
TEST_SERVERS = $(if $(filter 1,$(CORAL_SKIP_S3)),,vgw=$$(bash hack/install-test-servers.sh) && export CORAL_VERSITYGW="$$vgw" &&)
test: ## unit and integration tests (installs the test servers first; real in-process servers; registries started by the tests)
	$(TEST_SERVERS) $(GO) test ./...

e2e: ## end-to-end tests on the local cluster (make cluster-up first)
	CORAL_E2E=1 $(GO) test ./e2e/ -count=1 -v -timeout 60m

check: ## the README's test command: unit tests, the release check, then the local cluster and the e2e suite
	$(MAKE) --no-print-directory test
	$(MAKE) --no-print-directory release-check
	$(MAKE) --no-print-directory cluster-up
	$(TEST_SERVERS) $(MAKE) --no-print-directory e2e

demo: ## Coral's main job on the built-in local cluster: prefetch two images onto one pool
	bash e2e/demo.sh

WORKER_PLATFORMS ?= linux/amd64 linux/arm64
# grpcnotrace drops grpc's golang.org/x/net/trace, whose html/template makes
# the linker keep every exported method of every type (reflection by name):
# 22.6 MB -> 14.5 MB for linux/amd64. The worker never turns grpc tracing on.
# jobimage/deps_test.go reads this line and lists the worker's deps with it.
WORKER_TAGS := grpcnotrace
# The worker image: static binaries for every platform, assembled FROM scratch
# into one OCI index with go-containerregistry (no Docker engine). With
# REGISTRY=host:port it is pushed as $(REGISTRY)/$(WORKER_REPO):$(VERSION) and the
# reference is printed as the last line; without, it is written as an OCI layout.
# Loopback registries are reached over plain http; INSECURE=1 allows it elsewhere.
jobimage: ## build the worker image (REGISTRY=host:port to push)
	@mkdir -p bin/worker
	@set -e; args=""; for p in $(WORKER_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -tags '$(WORKER_TAGS)' -ldflags '$(LDFLAGS)' -o bin/worker/coral-worker-$$os-$$arch ./jobimage >&2; \
	  args="$$args --binary $$p=bin/worker/coral-worker-$$os-$$arch"; \
	done; \
	if [ -n "$(REGISTRY)" ]; then \
	  $(GO) run ./jobimage/assemble $$args $(if $(INSECURE),--insecure) --push $(REGISTRY)/$(WORKER_REPO):$(VERSION); \
	else \
	  $(GO) run ./jobimage/assemble $$args --oci-layout bin/worker/oci-layout; \
	fi

# What a registry stores per platform (the sum of compressed layers, config and
# manifest, read from the OCI layout `make jobimage` writes) and where the
# bytes of the linux/amd64 binary go (top packages and modules; a second build
# without -s -w, same tags, only for its symbol table).
worker-size: ## print the worker image's stored size per platform and its top packages (TOP=10)
	@$(MAKE) --no-print-directory jobimage REGISTRY= >&2
	@CGO_ENABLED=0 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -tags '$(WORKER_TAGS)' -ldflags '$(filter-out -s -w,$(LDFLAGS))' -o bin/worker/coral-worker-linux-amd64.sym ./jobimage
	@$(GO) run ./jobimage/size --oci-layout bin/worker/oci-layout --symbols bin/worker/coral-worker-linux-amd64.sym --top $(or $(TOP),10)

jobimage-push: ## push the versioned worker image: make jobimage-push REGISTRY=… VERSION=…
	@test -n "$(REGISTRY)" || { echo "set REGISTRY=host[:port][/path]" >&2; exit 2; }
	@$(MAKE) --no-print-directory jobimage REGISTRY=$(REGISTRY) VERSION=$(VERSION)

.PHONY: release release-check
# Archives for linux/darwin/windows × amd64/arm64, sha256sums.txt and the krew
# manifest (krew/.krew.yaml rendered) in _output/release. The worker image of
# the same version is pushed separately: make jobimage-push REGISTRY=… VERSION=….
release: ## release archives, checksums and krew manifest: make release VERSION=vX.Y.Z
	GO='$(GO)' VERSION='$(VERSION)' COMMIT='$(COMMIT)' LDFLAGS='$(LDFLAGS)' bash hack/release.sh

release-check: ## build a release (v0.0.0-ci), validate its krew manifest, install it with krew offline and run it through kubectl
	GO='$(GO)' bash hack/release-check.sh

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

cluster-up: ## start the local offline multi-node cluster (root)
	bash e2e/cluster/up.sh

cluster-down: ## remove every trace of the local cluster
	bash e2e/cluster/down.sh

.PHONY: bench-mirror
bench-mirror: ## coral mirror vs crane copy: ~200 MiB two-platform index between two local registries, cold and warm, medians (ROUNDS=5 SIZE_MB=200)
	bash bench/mirror/bench-mirror.sh

# Runs on the local cluster as it is (root; started first only when it has no
# env file), with the worker image that cluster-up last pushed.
bench-prefetch: ## kubectl coral prefetch images vs direct CRI pulls: ~200 MB onto every node of the local cluster, interleaved rounds, medians, ratio, where the overhead goes (ROUNDS=5, BENCH_ARGS='--images 5 --layers 4 --layer-size 10000000')
	@test -f _output/cluster/env || $(MAKE) --no-print-directory cluster-up >&2
	@$(MAKE) --no-print-directory build >&2
	$(GO) run ./bench/prefetch $(if $(ROUNDS),--rounds=$(ROUNDS)) $(BENCH_ARGS)

.PHONY: bench-artifacts
# Starts its own servers on loopback (an HTTP file server in the bench, versitygw
# from hack/install-test-servers.sh) and needs curl; writes 1 GiB files under
# /tmp and /dev/shm, removed at the end. About 4-7 minutes on 2 busy cores.
bench-artifacts: ## worker artifact downloads of 1 GiB: http vs curl -o, S3 ranged parallel vs one stream (versitygw), disk and tmpfs; interleaved rounds, medians, ratios, phases (ROUNDS=5, BENCH_ARGS='--size-mib 1024 --dir /tmp --tmpfs auto')
	@command -v curl >/dev/null || { echo "bench-artifacts needs curl: apt-get install -y curl" >&2; exit 2; }
	vgw=$$(bash hack/install-test-servers.sh) && $(GO) run ./bench/artifacts --versitygw="$$vgw" $(if $(ROUNDS),--rounds=$(ROUNDS)) $(BENCH_ARGS)

.PHONY: fuzz
# Every native Go fuzz target (func FuzzX(f *testing.F) in a *_test.go file),
# found by name, one after another, each for FUZZTIME; the first failure stops
# the run and fails it. New findings are kept in the package's testdata/fuzz.
# FUZZ=regexp picks targets by name; FUZZ_PKGS=./pkg/x/... limits the packages.
FUZZTIME ?= 5m
fuzz: ## run every Fuzz* target in the repository for FUZZTIME each (default 5m; CI: FUZZTIME=10s)
	GO='$(GO)' FUZZTIME='$(FUZZTIME)' FUZZ='$(FUZZ)' bash hack/fuzz.sh $(FUZZ_PKGS)

.PHONY: bench-scale
# Starts its own control plane without kubelets (e2e/cluster/scale-up.sh, kwok
# built once into $(CORAL_CACHE)) and stops it at the end, also on failure.
bench-scale: ## prefetch on N kwok-simulated nodes vs the bound the control plane allows, side by side (SCALE_N="100 1000 5000", ROUNDS=1, SCALE_ARGS=…; see docs/scale.md)
	SCALE_N='$(SCALE_N)' ROUNDS='$(ROUNDS)' SCALE_ARGS='$(SCALE_ARGS)' GO='$(GO)' bash bench/scale/bench-scale.sh

# --- controller mode (issue 11) ----------------------------------------------
.PHONY: manifests verify-manifests controller controllerimage controllerimage-push
CONTROLLER_GEN := $(GO) -C hack/tools run sigs.k8s.io/controller-tools/cmd/controller-gen
CONTROLLER_REPO ?= coral-controller
CONTROLLER_PLATFORMS ?= $(WORKER_PLATFORMS)

# Deepcopy and CRDs from pkg/apis (controller-gen pinned in hack/tools/go.mod).
# The CRDs are written to config/crd and embedded by `kubectl coral install`.
manifests: ## generate deepcopy code and CRD YAML from pkg/apis (commit the result)
	$(CONTROLLER_GEN) object paths=$(CURDIR)/pkg/apis/... 
	$(CONTROLLER_GEN) crd paths=$(CURDIR)/pkg/apis/... output:crd:artifacts:config=$(CURDIR)/config/crd

verify-manifests: ## fail when the generated deepcopy or CRDs are stale (run by pkg/apis tests too)
	@$(MAKE) --no-print-directory manifests >/dev/null
	@git diff --exit-code -- config/crd pkg/apis || { echo "generated files are stale: run make manifests and commit" >&2; exit 1; }

controller: ## bin/coral-controller
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/coral-controller ./cmd/coral-controller

# The controller image, assembled like the worker's (static, FROM scratch, no
# shell) with jobimage/assemble. REGISTRY=host:port pushes
# $(REGISTRY)/$(CONTROLLER_REPO):$(VERSION) and prints the reference last.
controllerimage: ## build the controller image (REGISTRY=host:port to push)
	@mkdir -p bin/controller
	@set -e; args=""; for p in $(CONTROLLER_PLATFORMS); do \
	  os=$${p%/*}; arch=$${p#*/}; \
	  CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/controller/coral-controller-$$os-$$arch ./cmd/coral-controller >&2; \
	  args="$$args --binary $$p=bin/controller/coral-controller-$$os-$$arch"; \
	done; \
	if [ -n "$(REGISTRY)" ]; then \
	  $(GO) run ./jobimage/assemble $$args --name coral-controller $(if $(INSECURE),--insecure) --push $(REGISTRY)/$(CONTROLLER_REPO):$(VERSION); \
	else \
	  $(GO) run ./jobimage/assemble $$args --name coral-controller --oci-layout bin/controller/oci-layout; \
	fi

controllerimage-push: ## push the versioned controller image: make controllerimage-push REGISTRY=… VERSION=…
	@test -n "$(REGISTRY)" || { echo "set REGISTRY=host[:port][/path]" >&2; exit 2; }
	@$(MAKE) --no-print-directory controllerimage REGISTRY=$(REGISTRY) VERSION=$(VERSION)
