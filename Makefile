# pushrelay: `make help` lists the targets.
GO      ?= go
BIN     ?= bin/pushrelay
NATS_BIN ?= bin/pushrelay-nats
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)
FUZZTIME ?= 30s

PREFIX  ?= /usr/local

.PHONY: help build build-nats install run run-cluster test test-short bench capacity hostile fuzz lint clean doctor tuning-diff

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {n++; name[n] = $$1; text[n] = $$2; if (length($$1) > w) w = length($$1)} \
		END {for (i = 1; i <= n; i++) printf "  %-*s  %s\n", w, name[i], text[i]}' $(MAKEFILE_LIST)

build: ## build bin/pushrelay
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/pushrelay

install: build ## install bin/pushrelay as $(PREFIX)/bin/pushrelay (PREFIX=/usr/local by default; PREFIX=~/.local needs no root)
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/pushrelay

run: build ## build, then serve with the defaults (clients on :8843, browsers on http://localhost:8845/)
	./$(BIN) serve

build-nats: ## build bin/pushrelay-nats, an embedded NATS server for trying a cluster on one host
	$(GO) build -trimpath -o $(NATS_BIN) ./cmd/pushrelay-nats

NODES ?= 3
CLUSTER_NATS ?= 127.0.0.1:4222
CLUSTER_LISTEN ?= :8843
CLUSTER_WEB ?= :8845
CLUSTER_HTTP_BASE ?= 8080
run-cluster: build build-nats ## one host, one client port: NATS on 127.0.0.1:4222 and NODES relays (default 3) sharing :8843 and the browsers' :8845 (--reuse-port); node N's ingress is ./pushrelay-N.sock, its HTTP 127.0.0.1:808N; Ctrl-C stops the relays, then NATS
	@# Every process runs in a session of its own (setsid), so Ctrl-C reaches
	@# only this shell, which stops the relays (they drain, still joined)
	@# and then NATS: NATS stopping first would make every relay warn.
	@setsid=$$(command -v setsid || true); relays=; \
	stop() { trap - INT TERM EXIT; kill -TERM $$relays 2>/dev/null; wait $$relays 2>/dev/null; \
		kill -TERM $$nats 2>/dev/null; wait $$nats 2>/dev/null; echo "run-cluster: relays stopped, then NATS"; exit 0; }; \
	trap stop INT TERM EXIT; \
	$$setsid $(NATS_BIN) --listen $(CLUSTER_NATS) & nats=$$!; \
	sleep 0.5; \
	for i in $$(seq 1 $(NODES)); do \
		$$setsid $(BIN) serve --reuse-port --nats nats://$(CLUSTER_NATS) --node $$i --listen $(CLUSTER_LISTEN) --web $(CLUSTER_WEB) \
			--ingress ./pushrelay-$$i.sock --http 127.0.0.1:$$(($(CLUSTER_HTTP_BASE) + i)) & relays="$$relays $$!"; \
	done; \
	wait

test: ## run every test with the race detector (what CI runs)
	$(GO) vet ./...
	$(GO) test -race -timeout 10m ./...

test-short: ## run every test without the race detector
	$(GO) test -timeout 10m ./...

bench: build ## the quick run (under 2 min here): micro-benchmarks, then 5,000 clients each for relay, baseline and kernel floor: broadcasts and unicasts, ending in a relay-vs-baseline table and its chart (bench-results/quick-*/summary.md, chart.svg)
	$(GO) test -run '^$$' -bench . -benchmem ./relay
	./$(BIN) bench quick --conns 5000

capacity: build ## the ramp to the first wall (or 50,000), relay beside baseline and kernel floor at each step (results and chart.svg in bench-results/capacity-*), then idle cost and the accept storm at scale
	./$(BIN) bench capacity
	./$(BIN) bench idle --conns 19000
	./$(BIN) bench storm --conns 18000

hostile: ## hostile inputs against the real binary (floods, storms, slowloris, stalled readers; about 10 s): the table of docs/hardening.md
	$(GO) test -count=1 ./internal/bench -run '^TestHostile$$' -hostile -v

fuzz: ## fuzz every parser for FUZZTIME each (default 30s)
	$(GO) test ./pkg/framing -run '^$$' -fuzz '^FuzzFrameReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/framing -run '^$$' -fuzz '^FuzzFramingRoundTrip$$' -fuzztime $(FUZZTIME)
	$(GO) test ./relay -run '^$$' -fuzz '^FuzzCheck$$' -fuzztime $(FUZZTIME)
	$(GO) test ./relay -run '^$$' -fuzz '^FuzzWebRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./relay -run '^$$' -fuzz '^FuzzWSHeader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./relay -run '^$$' -fuzz '^FuzzPolicyRequest$$' -fuzztime $(FUZZTIME)
	$(GO) test ./kernel-tuning/doctor -run '^$$' -fuzz '^FuzzCPUList$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ingress -run '^$$' -fuzz '^FuzzRequests$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ingress -run '^$$' -fuzz '^FuzzWireReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ingress -run '^$$' -fuzz '^FuzzHostAllowed$$' -fuzztime $(FUZZTIME)
	$(GO) test ./ingress -run '^$$' -fuzz '^FuzzBatchParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./loadgen -run '^$$' -fuzz '^FuzzIncrementalParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/stamp -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/clientid -run '^$$' -fuzz '^FuzzParse$$' -fuzztime $(FUZZTIME)
	$(GO) test ./pkg/bin -run '^$$' -fuzz '^FuzzReader$$' -fuzztime $(FUZZTIME)
	$(GO) test ./loadgen -run '^$$' -fuzz '^FuzzSplitTarget$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/pushrelay -run '^$$' -fuzz '^FuzzParseMessage$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cmd/pushrelay -run '^$$' -fuzz '^FuzzClientAddress$$' -fuzztime $(FUZZTIME)
	$(GO) test ./cluster -run '^$$' -fuzz '^FuzzDecodeEnvelope$$' -fuzztime $(FUZZTIME)
	$(GO) test ./internal/readyfile -run '^$$' -fuzz '^FuzzRead$$' -fuzztime $(FUZZTIME)

doctor: build ## say which host limit stops TARGET connections (default 1000000) and how to lift it
	./$(BIN) doctor --target $(or $(TARGET),1000000)

tuning-diff: ## show what kernel-tuning/99-pushrelay.conf would change on this host (writes nothing)
	kernel-tuning/apply-sysctl.sh --dry-run

lint: ## gofmt and go vet
	@test -z "$$(gofmt -l . | tee /dev/stderr)" || (echo "gofmt: the files above need formatting" && exit 1)
	$(GO) vet ./...

clean: ## remove build output
	rm -rf bin
