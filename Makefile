# Coral — kubectl plugin that prefetches images and artifacts onto nodes.
SHELL := /usr/bin/env bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo v0.0.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
REGISTRY ?=
WORKER_REPO ?= coral-worker
PKG := github.com/coral-dev/coral
LDFLAGS := -s -w -X $(PKG)/pkg/version.Version=$(VERSION) -X $(PKG)/pkg/version.Commit=$(COMMIT)

.PHONY: build test e2e test-all cluster-up cluster-down demo jobimage bench-prefetch bench-mirror fmt vet

build: ## bin/kubectl-coral
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/kubectl-coral ./cmd/kubectl-coral

test: ## unit and integration tests (real in-process servers; registries started by the tests)
	$(GO) test ./...

fmt:
	gofmt -l -w $$(git ls-files '*.go')

vet:
	$(GO) vet ./...

cluster-up: ## start the local offline multi-node cluster (root)
	bash e2e/cluster/up.sh

cluster-down: ## remove every trace of the local cluster
	bash e2e/cluster/down.sh
