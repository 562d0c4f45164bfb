# caddy-olla. `make run` for the offline demo, `make test` for the tests.
MODULE        := github.com/caddy-olla/olla
CADDY_VERSION := v2.11.9
GO            ?= go
BIN           := bin
# Fuzzing budgets are execution counts, not durations: with a duration, Go's
# fuzz coordinator (before Go 1.27, go.dev/issue/75804) can report its own
# deadline as a failure, "context deadline exceeded" with no failing input,
# when a worker is mid-run as time runs out, which a busy machine makes likely.
# A count has no deadline; a busy machine only makes it slower.
FUZZTIME      ?= 20000x
# Go minimises each new interesting input for up to 60 s by default; a count
# keeps a slow minimisation short for the same reason.
FUZZMINIMIZE  ?= 100x

.PHONY: build run run-local test test-short bench adapt xcaddy fuzz vet clean

build: ## Caddy with the olla module, and the backend simulator
	@echo "building bin/caddy and bin/olla-sim (the first build compiles Caddy: a few minutes; later ones take seconds)"
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/caddy ./cmd/caddy
	$(GO) build -trimpath -ldflags "-s -w" -o $(BIN)/olla-sim ./cmd/olla-sim

run: build ## simulated backends + Caddy on 127.0.0.1:40114 (offline)
	./scripts/run-demo.sh

run-local: build ## Caddyfile.example against local Ollama, LM Studio and vLLM
	$(BIN)/caddy run --config Caddyfile.example --adapter caddyfile

# go test stops a package's tests after 10 minutes by default; on a busy
# machine the integration package takes longer than that (25 minutes on two
# shared cores at a load of 50).
test: ## every test, with the race detector
	$(GO) test -race -count=1 -timeout 60m ./...

.PHONY: e2e e2e-screenshot
e2e: build ## end-to-end: bin/caddy + simulated backends, driven by the official openai, ollama and @anthropic-ai/sdk npm clients
	./e2e/run.sh

# make e2e saves the dashboard's screenshot in e2e/.run/ (ignored), so a test
# run leaves the tree clean; this one updates the README's picture.
e2e-screenshot: build ## make e2e, saving the dashboard's screenshot to docs/dashboard.png
	E2E_SCREENSHOT=$(CURDIR)/docs/dashboard.png ./e2e/run.sh

test-short: ## unit tests only (no in-process Caddy)
	$(GO) test -short -count=1 ./...

bench: ## benchmarks: balancer selection, model extraction, engines
	$(GO) test -run '^$$' -bench . -benchmem ./balancer/ . ./engines/olla/

adapt: build ## Caddyfile.example as JSON
	$(BIN)/caddy adapt --config Caddyfile.example --adapter caddyfile --pretty

xcaddy: ## the same binary through xcaddy, with the olla config adapter (offline once a first run online filled the module cache)
	@# xcaddy resolves imports in a fresh module with the proxy off, so the
	@# cache needs every module of the graph, including ones only consulted
	@# to rule out an ambiguous import (regexp2 v1 for regexp2/v2), and
	@# xcaddy itself: more than `make build` (or `make run`) fetches. The
	@# first run fills it through the proxy; offline this step fails and is
	@# skipped. One module deep in the graph is not on the proxy; nothing
	@# imports it. It works on a copy of go.mod and go.sum, so the checkout
	@# stays tidy.
	@# The adapter is a package of this module: its --with has no
	@# replacement of its own, so xcaddy imports it from the replaced module.
	@# Every module comes from the local cache (GOPROXY=off), whose contents
	@# `go mod download` checked against go.sum; xcaddy's temporary module has
	@# no go.sum, so the checksum database is not consulted (GOSUMDB=off).
	@# A module missing from the cache ends the build with a line saying
	@# what to do, after Go's own "module lookup disabled by GOPROXY=off".
	@tmp=$$(mktemp -d) && cp go.mod go.sum $$tmp/ && \
		{ $(GO) mod download -modfile=$$tmp/go.mod all 2>/dev/null || echo "some modules could not be downloaded (offline?): building from the module cache"; }; \
		echo "CADDY_VERSION=$(CADDY_VERSION) GOPROXY=off GOSUMDB=off $(GO) tool xcaddy build $(CADDY_VERSION) --output $(BIN)/caddy-xcaddy --with $(MODULE)=./ --with $(MODULE)/adapter"; \
		{ CADDY_VERSION=$(CADDY_VERSION) GOPROXY=off GOSUMDB=off $(GO) tool xcaddy build $(CADDY_VERSION) --output $(BIN)/caddy-xcaddy \
			--with $(MODULE)=./ --with $(MODULE)/adapter 2>&1; echo $$? >$$tmp/status; } | tee $$tmp/log; \
		status=$$(cat $$tmp/status); \
		if [ "$$status" != 0 ] && grep -q "lookup disabled by GOPROXY=off" $$tmp/log; then \
			echo "make xcaddy: the module cache lacks modules xcaddy needs (make build and make run fetch only what bin/caddy needs); run make xcaddy once with network access: it fetches them, and later runs build offline" >&2; \
		fi; \
		rm -rf $$tmp; exit $$status

fuzz: ## FUZZTIME executions (a count, e.g. 20000x) of fuzzing for each target: model extractor, Caddyfile parser, YAML adapter, Anthropic and Responses stream translators
	@# go test -fuzz takes one target per run, so they run one after another.
	$(GO) test -run '^$$' -fuzz '^FuzzExtractModel$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	$(GO) test -run '^$$' -fuzz '^FuzzCaddyfile$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) .
	$(GO) test -run '^$$' -fuzz '^FuzzAdapt$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./adapter/
	$(GO) test -run '^$$' -fuzz '^FuzzStreamTranslator$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./translate/anthropic/
	$(GO) test -run '^$$' -fuzz '^FuzzStreamTranslator$$' -fuzztime $(FUZZTIME) -fuzzminimizetime $(FUZZMINIMIZE) ./translate/responses/

vet:
	$(GO) vet ./...

clean:
	rm -rf $(BIN)

.PHONY: loadtest
loadtest: build ## olla and sherpa engines vs plain reverse_proxy under load, hostile clients on loaded backends, then reload under load (~7 min; quick: LOADTEST_FLAGS="-scenarios a -duration 3s -rounds 1"; only the hostile one: LOADTEST_FLAGS="-scenarios h")
	$(GO) build -o $(BIN)/loadtest ./internal/loadtest
	$(BIN)/loadtest -go "$(GO)" $(LOADTEST_FLAGS)

.PHONY: loadtest-routing loadtest-overload loadtest-keylimits
loadtest-routing: build ## routing quality (issues 11 and 20): workloads (a)-(g) on vLLM-like, Ollama-like and mixed fleets, with and without session ids, one and two proxies; Caddy's round_robin and least_conn vs olla's strategies (~40 min; one fleet: LOADTEST_FLAGS="-routing a2-70"; against another build: LOADTEST_FLAGS="-routing-baseline path/to/caddy")
	$(GO) build -o $(BIN)/loadtest ./internal/loadtest
	$(BIN)/loadtest -go "$(GO)" -routing all $(LOADTEST_FLAGS)

loadtest-overload: build ## admission (issue 12): 200 clients at once on 4 backends of 2 slots that answer 503 when full; queue vs no queue vs reverse_proxy, queued memory and queue overhead (~4 min)
	$(GO) build -o $(BIN)/loadtest ./internal/loadtest
	$(BIN)/loadtest -go "$(GO)" -overload $(LOADTEST_FLAGS)

loadtest-keylimits: build ## key_limits' cost (issue 24): the same light load with key_limits off, in memory and in a real redis-server, CPU per request and throughput as ratios (~3 min; needs redis-server for the third)
	$(GO) build -o $(BIN)/loadtest ./internal/loadtest
	$(BIN)/loadtest -go "$(GO)" -keylimits $(LOADTEST_FLAGS)
