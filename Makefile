# overlord: make build | test | demo | bench | lint | fmt | man | install
GO      ?= go
BIN     ?= bin
# make install puts files under $(DESTDIR)$(PREFIX).
PREFIX  ?= /usr/local
DESTDIR ?=
BINDIR      = $(DESTDIR)$(PREFIX)/bin
MAN1DIR     = $(DESTDIR)$(PREFIX)/share/man/man1
BASHCOMPDIR = $(DESTDIR)$(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR  = $(DESTDIR)$(PREFIX)/share/zsh/site-functions
FISHCOMPDIR = $(DESTDIR)$(PREFIX)/share/fish/vendor_completions.d
UNITDIR     = $(DESTDIR)$(PREFIX)/lib/systemd/system
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS := -s -w -X github.com/overlordhq/overlord/internal/buildinfo.version=$(VERSION)

.PHONY: all build test test-packages test-e2e demo bench fleet-bench lint fmt docs man completions install uninstall clean

all: build man completions

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/overlord ./cmd/minion

# test lints too, so CI (.ci/run: make test) does. The package tests run
# with the race detector; e2e at the same time without it on the harness
# but with race-built product binaries for its race tests (-race-product):
# docs/testing.md. go test -race ./... runs all of it under the detector.
test:
	@$(MAKE) --no-print-directory -j3 lint test-packages test-e2e

test-packages:
	$(GO) test -race -p 4 $$($(GO) list ./... | grep -v '/e2e$$')

test-e2e:
	$(GO) test ./e2e -args -race-product

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

# man pages of every command of both binaries, from their cobra commands.
man:
	rm -rf $(BIN)/man
	$(GO) run ./internal/mangen $(BIN)/man

# shell completion scripts, from the binaries themselves.
completions: build
	mkdir -p $(BIN)/completions
	for b in overlord minion; do \
		$(BIN)/$$b completion bash >$(BIN)/completions/$$b.bash && \
		$(BIN)/$$b completion zsh >$(BIN)/completions/_$$b && \
		$(BIN)/$$b completion fish >$(BIN)/completions/$$b.fish || exit 1; \
	done

# install copies what make (build, man, completions) made, making what is
# missing, so that `make && sudo make install` needs no Go toolchain as root.
install: $(BIN)/overlord $(BIN)/minion $(BIN)/man/overlord.1 $(BIN)/completions/overlord.bash
	install -d $(BINDIR) $(MAN1DIR) $(BASHCOMPDIR) $(ZSHCOMPDIR) $(FISHCOMPDIR) $(UNITDIR)
	install -m 0755 $(BIN)/overlord $(BIN)/minion $(BINDIR)/
	for u in minion overlord; do \
		sed 's|@BINDIR@|$(PREFIX)/bin|g' dist/systemd/$$u.service >$(UNITDIR)/$$u.service && \
		chmod 0644 $(UNITDIR)/$$u.service || exit 1; \
	done
	install -m 0644 $(BIN)/man/*.1 $(MAN1DIR)/
	for b in overlord minion; do \
		install -m 0644 $(BIN)/completions/$$b.bash $(BASHCOMPDIR)/$$b && \
		install -m 0644 $(BIN)/completions/_$$b $(ZSHCOMPDIR)/_$$b && \
		install -m 0644 $(BIN)/completions/$$b.fish $(FISHCOMPDIR)/$$b.fish || exit 1; \
	done

$(BIN)/overlord $(BIN)/minion:
	$(MAKE) build

$(BIN)/man/overlord.1:
	$(MAKE) man

$(BIN)/completions/overlord.bash: $(BIN)/overlord $(BIN)/minion
	$(MAKE) completions

uninstall:
	rm -f $(BINDIR)/overlord $(BINDIR)/minion $(MAN1DIR)/overlord.1 $(MAN1DIR)/overlord-*.1 $(MAN1DIR)/minion.1 $(MAN1DIR)/minion-*.1
	for b in overlord minion; do rm -f $(BASHCOMPDIR)/$$b $(ZSHCOMPDIR)/_$$b $(FISHCOMPDIR)/$$b.fish $(UNITDIR)/$$b.service; done

clean:
	rm -rf $(BIN)
