# runcts: build, install and test the containerd shim.
PREFIX ?= /usr/local
LIBDIR  = $(PREFIX)/lib/runcts
NODE_GYP = node $(shell dirname $$(readlink -f $$(which npm)))/../node_modules/node-gyp/bin/node-gyp.js
# Node's own headers: node-gyp run directly would try to download them (there is no network).
NODEDIR ?= $(abspath $(dir $(realpath $(shell which node)))/..)
# The installed shim runs this node by absolute path: containerd's PATH may not contain it.
NODE ?= $(realpath $(shell which node))

.PHONY: all deps build addon ts snapshot install uninstall test test-unit test-integration bench stress soak clean

all: build

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

deps: node_modules/.package-lock.json

addon: deps
	cd addon && $(NODE_GYP) rebuild --nodedir=$(NODEDIR)

ts: deps
	npx tsc -p tsconfig.json
	node dist/shim/framework/proto.js --write-descriptor
	git rev-parse HEAD > dist/revision 2>/dev/null || : > dist/revision
	$(MAKE) snapshot

# The shim as one bundled file and a V8 startup snapshot of it: every containerd call of the shim
# binary (start, the daemon, delete) then deserialises a ready heap instead of loading and
# compiling its modules. The snapshot embeds its directory: `install` rebuilds it in place.
snapshot:
	npx esbuild shim/bundle-entry.ts --bundle --platform=node --target=node20 --format=cjs \
	  --outfile=dist/runcts.js --log-level=warning
	cd dist && node --snapshot-blob runcts.blob --build-snapshot runcts.js 2>snapshot.log \
	  || { cat snapshot.log >&2; exit 1; }

build: addon ts

install: build
	rm -rf $(LIBDIR)
	mkdir -p $(LIBDIR) $(PREFIX)/bin
	cp -r bin dist proto package.json package-lock.json $(LIBDIR)/
	mkdir -p $(LIBDIR)/addon/build/Release
	cp addon/build/Release/runcts_native.node $(LIBDIR)/addon/build/Release/
	cd $(LIBDIR) && npm ci --omit=dev --no-audit --no-fund --ignore-scripts
	sed -i -e 's|^node=node$$|node=$(NODE)|' -e 's|^dist=$$|dist=$(LIBDIR)/dist|' $(LIBDIR)/bin/containerd-shim-runcts-v2
	cd $(LIBDIR)/dist && $(NODE) --snapshot-blob runcts.blob --build-snapshot runcts.js 2>/dev/null
	ln -sf $(LIBDIR)/bin/containerd-shim-runcts-v2 $(PREFIX)/bin/containerd-shim-runcts-v2

uninstall:
	rm -rf $(LIBDIR) $(PREFIX)/bin/containerd-shim-runcts-v2

test: build
	npx tap dist/test/unit dist/test/integration

test-unit: build
	npx tap dist/test/unit

test-integration: build
	npx tap dist/test/integration

clean:
	rm -rf dist addon/build

# Side by side with the Go shim, see docs/benchmarks.md (BENCH_ROUNDS, BENCH_PODS, BENCH_GROUPED, BENCH_ONLY, BENCH_CONTAINERD, ...)
bench: build
	node dist/test/bench/main.js

# Long exit-ordering race runs: make stress ITERATIONS=20
ITERATIONS ?= 10
stress: build
	node dist/test/integration/stress-ordering.js $(ITERATIONS)

# Load and soak: 1,000 lifecycles and 10,000 execs through one shim, then 100,000 probe execs
# (RUNCTS_SOAK_ONLY=soak or probes for one of them; test/soak/main.ts;
# RUNCTS_SOAK_LIFECYCLES, RUNCTS_SOAK_EXECS, RUNCTS_SOAK_RSS_BOUND_KIB, ... override). Fails when an assertion does.
soak: build
	node dist/test/soak/main.js
