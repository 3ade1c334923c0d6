# llma-sentiment: `make run` runs the main job, `make test` runs every test.
# Every step installs what it needs (rustup target, Python venv, servers).

SHELL := /bin/bash
.DEFAULT_GOAL := build

# Intermediate artifacts (the large dependencies) live in one build dir shared by
# every checkout; the final binaries and the plugin land in this checkout's own
# target dir, so two checkouts never overwrite each other's binaries.
export CARGO_BUILD_BUILD_DIR ?= /var/cache/llma-sentiment/target
export CARGO_TARGET_DIR ?= $(CURDIR)/target
# No incremental data: every checkout (and CI's clean clones) shares the build
# dir, where it grew by gigabytes per checkout and bought little for a build
# that mostly compiles the host crate once.
export CARGO_INCREMENTAL ?= 0
# librdkafka (compiled from C by rdkafka-sys) without debug symbols, as the
# Rust dependencies are built (debug = false): mklove's documented switch.
export MKL_NO_DEBUG_SYMBOLS ?= y
# The plugins' build scripts rebuild them when the checkout changes (their
# artifacts in the shared build dir would otherwise pass for another's).
export LLMA_CHECKOUT_DIR := $(CURDIR)
export LLMA_VENV ?= /var/cache/llma-sentiment/venv
PY := $(LLMA_VENV)/bin/python
MODELS := $(CURDIR)/build/models
WASM_DIR := $(CARGO_TARGET_DIR)/wasm32-wasip2/release
PLUGIN_WASM := $(WASM_DIR)/llma_sentiment_plugin.wasm
HOSTILE_WASM := $(WASM_DIR)/llma_hostile_plugin.wasm
BIN := $(CARGO_TARGET_DIR)/debug/llma-sentiment
# The tests' signing key (made once by `plugin keygen`, never a real one) and
# the plugins signed with it (beside the built ones: cargo's outputs stay as built).
TEST_KEYS := $(CURDIR)/build/keys
SIGNED_PLUGIN_WASM := $(WASM_DIR)/llma_sentiment_plugin.signed.wasm
SIGNED_HOSTILE_WASM := $(WASM_DIR)/llma_hostile_plugin.signed.wasm
# What the tests read to find the bundles, the plugins, the venv and the repo.
TEST_ENV := LLMA_TEST_MODELS=$(MODELS) LLMA_TEST_PLUGIN=$(PLUGIN_WASM) LLMA_TEST_HOSTILE_PLUGIN=$(HOSTILE_WASM) \
	LLMA_TEST_PYTHON=$(PY) LLMA_TEST_REPO=$(CURDIR) \
	LLMA_TEST_SIGNING_KEY=$(TEST_KEYS)/test.sk LLMA_TEST_PUBLIC_KEY=$(TEST_KEYS)/test.pk \
	LLMA_TEST_SIGNED_PLUGIN=$(SIGNED_PLUGIN_WASM) LLMA_TEST_SIGNED_HOSTILE_PLUGIN=$(SIGNED_HOSTILE_WASM)

# The host binary embeds the default plugin and model (see host/build.rs).
export LLMA_EMBED_PLUGIN := $(PLUGIN_WASM)
export LLMA_EMBED_MODEL_DIR := $(MODELS)/default

.PHONY: setup venv target sysdeps plugin plugins signed-plugins models build run analyze test test-native native bench bench-model model clean reliability \
	release install cluster-demo deploy-check kafka-broker bench-ingest demo-kafka screenshots

setup: target venv

target: sysdeps
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

# Debian's libssl-dev and pkg-config (the Kafka client's TLS), when missing.
sysdeps:
	@scripts/sysdeps.sh

venv:
	@scripts/venv.sh models/requirements.txt >/dev/null

# Release always: tract in a debug wasm build is far too slow. `plugin` is
# the one the binary embeds; `plugins` adds the tests' hostile plugin (one
# small crate on the same wit-bindgen: nothing of the first is rebuilt).
plugin: target
	cargo build --release --target wasm32-wasip2 -p llma-sentiment-plugin

plugins: target
	cargo build --release --target wasm32-wasip2 -p llma-sentiment-plugin -p llma-hostile-plugin

$(MODELS)/default/model.onnx: models/build_default.py models/bundle_common.py models/requirements.txt | venv
	$(PY) models/build_default.py --out $(MODELS)/default

$(MODELS)/roberta-tiny/model.onnx: models/build_roberta.py models/bundle_common.py models/requirements.txt | venv
	$(PY) models/build_roberta.py --shape tiny --cumsum int64 --seed 7 --out $(MODELS)/roberta-tiny

$(MODELS)/roberta-tiny-i32/model.onnx: models/build_roberta.py models/bundle_common.py models/requirements.txt | venv
	$(PY) models/build_roberta.py --shape tiny --cumsum int32 --seed 7 --out $(MODELS)/roberta-tiny-i32

# An int8 bundle is its f32 bundle's files with "llma_precision": "int8".
$(MODELS)/%-int8/config.json: $(MODELS)/%/model.onnx models/int8_bundle.py | venv
	$(PY) models/int8_bundle.py $(MODELS)/$* $(MODELS)/$*-int8

models: $(MODELS)/default/model.onnx $(MODELS)/roberta-tiny/model.onnx $(MODELS)/roberta-tiny-i32/model.onnx \
	$(MODELS)/roberta-tiny-int8/config.json

# The benchmark model (~500 MB): generated on demand, never committed.
bench-model: $(MODELS)/roberta-base-shape/model.onnx $(MODELS)/roberta-base-shape-int8/config.json
$(MODELS)/roberta-base-shape/model.onnx: models/build_roberta.py models/bundle_common.py | venv
	$(PY) models/build_roberta.py --shape base --cumsum int64 --seed 11 --out $(MODELS)/roberta-base-shape

# `make bench`: ours (tract in wasm, native tract) against the seed's ONNX
# Runtime on roberta-base-shape, one table (several minutes, few reps).
# `make bench LLMA_BENCH_QUICK=1`: smoke run on the default and roberta-tiny
# bundles. Inputs and raw results land in build/bench/.
BENCH_QUICK := $(filter-out 0 false no off,$(LLMA_BENCH_QUICK))
BENCH_BIN := $(CARGO_TARGET_DIR)/debug/llma-bench
bench: build models native $(if $(BENCH_QUICK),,bench-model)
	cargo build -p llma-bench
	$(BENCH_BIN) $(if $(BENCH_QUICK),--quick) --plugin $(PLUGIN_WASM) \
		--models-dir $(MODELS) --python $(PY) --scripts models \
		--native-bench $(CARGO_TARGET_DIR)/debug/examples/native-bench --work-dir build/bench

# `make bench-ingest`: `llma-sentiment schedule` on a real broker with one
# worker on the default bundle: events/s consumed and started and rows/s from
# a backlog, produce-to-row p50/p99 at a steady offered rate, one workflow per
# event and batched, and each process's CPU per 1,000 events
# (host/tests/bench_ingest.rs; ~2 min). Tables on stdout and in
# build/bench/ingest.md; LLMA_BENCH_INGEST_SCALE=F scales the counts.
bench-ingest: plugins models kafka-broker
	cargo build $(CARGO_PKGS) --all-targets $(TEST_FEATURES)
	LLMA_SENTIMENT_CACHE_DIR=$(TEST_CACHE) $(BIN) plugin prepare >/dev/null
	$(TEST_ENV) cargo test -p llma-sentiment $(TEST_FEATURES) --test bench_ingest -- --ignored --nocapture

# The Sentiment pages' screenshots in docs/img/, from the browser test.
screenshots:
	LLMA_SCREENSHOTS_DIR=$(CURDIR)/docs/img $(MAKE) --no-print-directory test TEST_ARGS="--test view_browser"

# The plugin's inference compiled natively (feature `native`): a tract and a
# tokenizers for the host, which nothing else needs, so `make build` and
# `make test` leave them out. `native` builds `native-bench` (for `make
# bench`); `test-native` runs the bundle tests on it (parity with ONNX
# Runtime outside the sandbox, the int64 fixture against plain tract-onnx).
NATIVE := -p llma-sentiment-plugin --features llma-sentiment-plugin/native
native:
	cargo build $(NATIVE) --example native-bench

test-native: models
	$(TEST_ENV) cargo test $(NATIVE) --test bundles

# `make build` compiles the binary and what it needs (the plugin it embeds,
# the default bundle): no test, example or benchmark target. The tests'
# package set (CARGO_PKGS, all targets) is one invocation, exactly what
# `cargo test` builds, so its dependencies are compiled once for both.
CARGO_PKGS := -p llma-sentiment-plugin -p llma-sentiment -p llma-bench -p llma-proc-stats -p llma-sparse-file

build: plugin $(MODELS)/default/model.onnx
	cargo build -p llma-sentiment --bin llma-sentiment

analyze: build
	$(BIN) analyze samples/events.jsonl

# The main job: real Temporal + ClickHouse on free loopback ports, the worker,
# the sample events in, sentiment rows out; everything stopped afterwards.
# PROFILE=seed (the defaults) or PROFILE=posthog-2026 (profiles/*.toml).
PROFILE ?= seed
run: build
	@test -f profiles/$(PROFILE).toml || { echo "no profile profiles/$(PROFILE).toml (seed, posthog-2026)" >&2; exit 2; }
	LLMA_SENTIMENT_CONFIG=$(CURDIR)/profiles/$(PROFILE).toml scripts/with-services.sh scripts/run-demo.sh $(BIN) samples/events.jsonl

# The seed's pipeline from the events topic: a throwaway broker, the sample
# events produced as PostHog's events JSON rows, `llma-sentiment schedule`,
# the worker, the rows in ClickHouse; everything stopped afterwards.
demo-kafka: build kafka-broker
	scripts/with-services.sh scripts/run-kafka-demo.sh $(BIN) samples/events.jsonl

# Release builds of the plugin (always release) and the host, which embeds the
# default plugin and model. A cold release build of the host takes ~20 min on
# 2 cores (wasmtime, tract and the Temporal SDK again, optimised); see docs/operations.md "Deploying".
RELEASE_BIN := $(CARGO_TARGET_DIR)/release/llma-sentiment

release: plugin $(MODELS)/default/model.onnx
	@start=$$(date +%s); \
	cargo build --release -p llma-sentiment --bin llma-sentiment && \
	echo "release: $(RELEASE_BIN) built in $$(( $$(date +%s) - start )) s"

# `make install PREFIX=/usr/local DESTDIR=` (run `make release` first, or
# name another binary with INSTALL_BIN=): the binary, the plugin, the default
# model, example config + env file, and the systemd template unit.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib
DATADIR ?= $(PREFIX)/share
DOCDIR ?= $(DATADIR)/doc/llma-sentiment
SYSCONFDIR ?= $(if $(filter /usr,$(PREFIX)),/etc,$(PREFIX)/etc)
SYSTEMDUNITDIR ?= $(LIBDIR)/systemd/system
INSTALL_BIN ?= $(RELEASE_BIN)
DEPLOY_SUBST := sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@LIBDIR@|$(LIBDIR)|g' -e 's|@DATADIR@|$(DATADIR)|g' \
	-e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' -e 's|@DOCDIR@|$(DOCDIR)|g'

install:
	@test -x "$(INSTALL_BIN)" || { echo "install: $(INSTALL_BIN) missing: run 'make release' first (or set INSTALL_BIN=)" >&2; exit 1; }
	@test -f "$(PLUGIN_WASM)" -a -f "$(MODELS)/default/model.onnx" || { echo "install: plugin or default model missing: run 'make release'" >&2; exit 1; }
	install -d "$(DESTDIR)$(BINDIR)" "$(DESTDIR)$(LIBDIR)/llma-sentiment/plugins" "$(DESTDIR)$(DATADIR)/llma-sentiment/models/default" \
		"$(DESTDIR)$(DATADIR)/llma-sentiment/examples" "$(DESTDIR)$(SYSCONFDIR)/llma-sentiment" "$(DESTDIR)$(SYSTEMDUNITDIR)" "$(DESTDIR)$(DOCDIR)"
	install -m 0755 "$(INSTALL_BIN)" "$(DESTDIR)$(BINDIR)/llma-sentiment"
	install -m 0644 "$(PLUGIN_WASM)" "$(DESTDIR)$(LIBDIR)/llma-sentiment/plugins/llma_sentiment_plugin.wasm"
	install -m 0644 $(wildcard $(MODELS)/default/*.json) "$(MODELS)/default/model.onnx" "$(DESTDIR)$(DATADIR)/llma-sentiment/models/default/"
	$(DEPLOY_SUBST) deploy/config.toml >"$(DESTDIR)$(DATADIR)/llma-sentiment/examples/config.toml"
	$(DEPLOY_SUBST) deploy/worker.env >"$(DESTDIR)$(DATADIR)/llma-sentiment/examples/worker.env"
	@# An operator's own config is never overwritten.
	for f in config.toml worker.env; do \
		test -e "$(DESTDIR)$(SYSCONFDIR)/llma-sentiment/$$f" || \
		install -m 0640 "$(DESTDIR)$(DATADIR)/llma-sentiment/examples/$$f" "$(DESTDIR)$(SYSCONFDIR)/llma-sentiment/$$f"; \
	done
	$(DEPLOY_SUBST) deploy/llma-sentiment@.service >"$(DESTDIR)$(SYSTEMDUNITDIR)/llma-sentiment@.service"
	chmod 0644 "$(DESTDIR)$(SYSTEMDUNITDIR)/llma-sentiment@.service"
	install -m 0644 README.md "$(DESTDIR)$(DOCDIR)/README.md"

# Installs into a temporary root with the debug binary and checks the unit
# with `systemd-analyze verify` (skipped, and said so, where it is missing).
deploy-check: build
	DEPLOY_CHECK_CACHE_DIR=$(TEST_CACHE) scripts/deploy-check.sh "$(BIN)"

# N workers (LLMA_CLUSTER_WORKERS, default 3) on one task queue with Redis:
# a stream of multi-turn conversations, one worker SIGKILLed and replaced,
# then who served what and the cache hit rates per worker.
cluster-demo: build
	$(TEST_ENV) cargo test $(CARGO_PKGS) --test cluster -- --ignored --nocapture cluster_demo

# `make test TEST_ARGS="--test worker"` runs one test target.
# Tests share one compiled-component cache (CARGO_TARGET_TMPDIR, which cargo
# puts under the build dir); compiling the 22 MB component and making the
# default plugin's snapshot once up front keeps concurrent tests (and the
# workers they start) from all doing it at the same time.
TEST_CACHE := $(CARGO_BUILD_BUILD_DIR)/tmp/llma-test-cache

# The tests' builds add the test-only fault switches (`fault-injection`, a
# feature of the host crate alone: it changes no dependency's features, so
# the large dependencies are not compiled again); the binary the tests run
# is built with it, the one `make build` makes is not.
TEST_FEATURES := --features llma-sentiment/fault-injection

# Every test runs against Debian's ClickHouse 18.16; the sink's, the
# migration's, the read side's (trace, session) and the pages' (view) run again against
# ClickHouse 26.9 (scripts/clickhouse.sh, flavour modern). With TEST_ARGS
# only the first pass runs (LLMA_TEST_CLICKHOUSE=modern picks the server).
MODERN_CLICKHOUSE_TESTS := --test sink --test schemas --test view
# The scheduler's tests (--test kafka) need the broker: installed unless
# TEST_ARGS picks targets (--test, --lib) without them (kafka.sh skips a
# pinned install).
NEEDS_BROKER := $(if $(filter --test --lib,$(TEST_ARGS)),$(findstring kafka,$(TEST_ARGS)),all)
test: plugins models
	$(if $(NEEDS_BROKER),$(MAKE) --no-print-directory kafka-broker)
	cargo build $(CARGO_PKGS) --all-targets $(TEST_FEATURES)
	$(MAKE) --no-print-directory signed-plugins
	LLMA_SENTIMENT_CACHE_DIR=$(TEST_CACHE) $(BIN) plugin prepare >/dev/null
	$(TEST_ENV) cargo test $(CARGO_PKGS) $(TEST_FEATURES) $(TEST_ARGS)
	$(if $(TEST_ARGS),,CLICKHOUSE_FLAVOR=modern scripts/clickhouse.sh install)
	$(if $(TEST_ARGS),,$(TEST_ENV) LLMA_TEST_CLICKHOUSE=modern cargo test $(CARGO_PKGS) $(TEST_FEATURES) $(MODERN_CLICKHOUSE_TESTS))

# The built plugins signed with the tests' key (generated once into build/keys).
signed-plugins:
	@test -f $(TEST_KEYS)/test.sk || { mkdir -p $(TEST_KEYS) && $(BIN) plugin keygen --secret $(TEST_KEYS)/test.sk --public $(TEST_KEYS)/test.pk; }
	$(BIN) plugin sign --key $(TEST_KEYS)/test.sk $(PLUGIN_WASM) -o $(SIGNED_PLUGIN_WASM) 2>/dev/null
	$(BIN) plugin sign --key $(TEST_KEYS)/test.sk $(HOSTILE_WASM) -o $(SIGNED_HOSTILE_WASM) 2>/dev/null

# The Kafka-compatible broker of the scheduler's tests (nisshi, pinned) into
# the tools cache outside the clone: a cold install compiles it (~15 min on 2
# cores), a second run only checks `nisshi --version`.
kafka-broker:
	scripts/kafka.sh install

# The production model needs a reachable model hub (not these machines).
model: | venv
	$(LLMA_VENV)/bin/pip install 'optimum[onnxruntime]'
	$(LLMA_VENV)/bin/optimum-cli export onnx --model cardiffnlp/twitter-roberta-base-sentiment-latest \
		--task text-classification $(MODELS)/twitter-roberta-base-sentiment-latest

clean:
	rm -rf build

# Fault injection on real servers (ClickHouse down 30 s, Temporal restarted,
# worker SIGKILLed mid-batch, an unstorable event in a batch) and 100_000 fuzz
# cases per property, and the scheduler's long forms on a real broker; prints
# the tables. Takes ~50 minutes on 2 cores, so it is not part of `make test`
# (which runs the fuzz properties at 256 cases and the scheduler's short forms).
# LLMA_FUZZ_CASES=N overrides the case count.
reliability: plugins models kafka-broker
	cargo build $(CARGO_PKGS) --all-targets $(TEST_FEATURES)
	$(TEST_ENV) scripts/reliability.sh
