# overlord: make build | test | demo | bench | lint | fmt
GO      ?= go
BIN     ?= bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/overlordhq/overlord/internal/buildinfo.version=$(VERSION)

.PHONY: all build test demo bench fleet-bench lint fmt docs clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/overlord ./cmd/minion

test:
	$(GO) vet ./...
	$(GO) test -race ./...

demo: build
	./scripts/demo.sh $(BIN)

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

fleet-bench: build
	BIN=$(BIN) ./bench/fleet.sh 100

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo 'gofmt needed: make fmt'; exit 1; }

fmt:
	gofmt -w .

# docs/modules.md is generated from the modules' own descriptions.
docs:
	$(GO) test ./internal/moddoc -run TestModulesDocUpToDate -update

clean:
	rm -rf $(BIN)
