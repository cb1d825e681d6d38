# overlord: make build | test | demo | bench | lint | fmt
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/overlordhq/overlord/internal/buildinfo.version=$(VERSION)

.PHONY: all build test demo bench fleet-bench lint fmt docs clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/overlord ./cmd/minion

# test runs lint first, so CI (.ci/run: make test) lints too.
test: lint
	$(GO) test -race ./...

demo: build
	./scripts/demo.sh $(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fleet-bench: build
	BIN=$(BIN) ./bench/fleet.sh 100

# staticcheck is a tool dependency pinned in go.mod (go get -tool).
lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed: make fmt'; exit 1; }
	$(GO) tool staticcheck ./...

fmt:
	gofmt -w .

# docs/modules.md is generated from the modules' own descriptions.
docs:
	$(GO) test ./internal/moddoc -run TestModulesDocUpToDate -update

clean:
	rm -rf $(BIN)
