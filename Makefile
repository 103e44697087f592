# obsproxy: make run (the demo), make test (what CI runs). See README.md.
GO            ?= go
BIN           := bin/obsproxy
VERSION       ?= 0.1.0-dev
LDFLAGS       := -s -w -X main.version=$(VERSION)
STATICCHECK   := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all deps build run test unit e2e fuzz lint fmt docs bench clean

all: build

## deps: install the Debian packages the demo and the tests need (when missing) and the Go modules
deps:
	@scripts/deps.sh
	$(GO) mod download

## build: the obsproxy binary at bin/obsproxy
build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/obsproxy

## run: obsproxy on :8080 (admin 127.0.0.1:9090) supervising 3 uvicorn workers of examples/app on unix sockets; Ctrl-C stops all
run: deps build
	@scripts/run.sh $(BIN)

## test: vet, unit tests with -race, the end-to-end tests against real uvicorn/hypercorn workers, and short fuzz runs
test: deps
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=5s

## fuzz: each fuzz target for FUZZTIME (default 30s): the token check, the client IP rule, the restart route's cross-site rule, the allowlist parser, the workers' metrics merge
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzCredentialsMatch$$' -fuzztime $(FUZZTIME) ./admin
	$(GO) test -run '^$$' -fuzz '^FuzzClientIP$$' -fuzztime $(FUZZTIME) ./admin
	$(GO) test -run '^$$' -fuzz '^FuzzCrossSite$$' -fuzztime $(FUZZTIME) ./admin
	$(GO) test -run '^$$' -fuzz '^FuzzParsePrefixes$$' -fuzztime $(FUZZTIME) ./cmd/obsproxy
	$(GO) test -run '^$$' -fuzz '^FuzzMerge$$' -fuzztime $(FUZZTIME) ./workermetrics

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /e2e)

e2e:
	$(GO) test -count=1 -v ./e2e

## lint: gofmt, go vet and staticcheck (pinned)
lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

## docs: regenerate docs/configuration.md from the Config struct tags (go test fails while it is out of date)
docs:
	$(GO) test ./cmd/obsproxy -run '^TestConfigDoc$$' -count=1 -update

## bench: nginx, HAProxy, Caddy, a bare ReverseProxy and obsproxy side by side on loopback (docs/performance.md); ROUNDS=1 DURATION=3 for a quick run
bench:
	@GO=$(GO) bench/run.sh

clean:
	rm -rf bin
