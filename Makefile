# llma-sentiment: `make run` runs the main job, `make test` runs every test.
# Every step installs what it needs (rustup target, Python venv, servers).

SHELL := /bin/bash
.DEFAULT_GOAL := build

# Intermediate artifacts (the large dependencies) live in one build dir shared by
# every checkout; the final binaries and the plugin land in this checkout's own
# target dir, so two checkouts never overwrite each other's binaries.
export CARGO_BUILD_BUILD_DIR ?= /var/cache/llma-sentiment/target
export CARGO_TARGET_DIR ?= $(CURDIR)/target
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

# The host binary embeds the default plugin and model (see host/build.rs).
export LLMA_EMBED_PLUGIN := $(PLUGIN_WASM)
export LLMA_EMBED_MODEL_DIR := $(MODELS)/default

.PHONY: setup venv target plugins models build run analyze test bench bench-model model clean reliability

setup: target venv

target:
	@rustup target list --installed | grep -qx wasm32-wasip2 || rustup target add wasm32-wasip2

venv:
	@scripts/venv.sh models/requirements.txt >/dev/null

# Release always: tract in a debug wasm build is far too slow.
plugins: target
	cargo build --release --target wasm32-wasip2 -p llma-sentiment-plugin -p llma-hostile-plugin

$(MODELS)/default/model.onnx: models/build_default.py models/bundle_common.py models/requirements.txt | venv
	$(PY) models/build_default.py --out $(MODELS)/default

$(MODELS)/roberta-tiny/model.onnx: models/build_roberta.py models/bundle_common.py models/requirements.txt | venv
	$(PY) models/build_roberta.py --shape tiny --cumsum int64 --seed 7 --out $(MODELS)/roberta-tiny

$(MODELS)/roberta-tiny-i32/model.onnx: models/build_roberta.py models/bundle_common.py models/requirements.txt | venv
	$(PY) models/build_roberta.py --shape tiny --cumsum int32 --seed 7 --out $(MODELS)/roberta-tiny-i32

models: $(MODELS)/default/model.onnx $(MODELS)/roberta-tiny/model.onnx $(MODELS)/roberta-tiny-i32/model.onnx

# The benchmark model (~500 MB): generated on demand, never committed.
bench-model: $(MODELS)/roberta-base-shape/model.onnx
$(MODELS)/roberta-base-shape/model.onnx: models/build_roberta.py models/bundle_common.py | venv
	$(PY) models/build_roberta.py --shape base --cumsum int64 --seed 11 --out $(MODELS)/roberta-base-shape

# `make bench`: ours (tract in wasm, native tract) against the seed's ONNX
# Runtime on roberta-base-shape, one table (several minutes, few reps).
# `make bench LLMA_BENCH_QUICK=1`: smoke run on the default and roberta-tiny
# bundles. Inputs and raw results land in build/bench/.
BENCH_QUICK := $(filter-out 0 false no off,$(LLMA_BENCH_QUICK))
bench: build $(if $(BENCH_QUICK),,bench-model)
	$(CARGO_TARGET_DIR)/debug/llma-bench $(if $(BENCH_QUICK),--quick) --plugin $(PLUGIN_WASM) \
		--models-dir $(MODELS) --python $(PY) --scripts models \
		--native-bench $(CARGO_TARGET_DIR)/debug/examples/native-bench --work-dir build/bench

# One package set and all targets, exactly what `cargo test` builds: cargo
# unifies dependency features per invocation, so building anything narrower
# would compile the large dependencies (wasmtime, tract, temporal) twice.
CARGO_PKGS := -p llma-sentiment-plugin -p llma-sentiment

build: plugins models
	cargo build $(CARGO_PKGS) --all-targets

analyze: build
	$(BIN) analyze samples/events.jsonl

# The main job: real Temporal + ClickHouse on free loopback ports, the worker,
# the sample events in, sentiment rows out; everything stopped afterwards.
# PROFILE=seed (the defaults) or PROFILE=posthog-2026 (profiles/*.toml).
PROFILE ?= seed
run: build
	@test -f profiles/$(PROFILE).toml || { echo "no profile profiles/$(PROFILE).toml (seed, posthog-2026)" >&2; exit 2; }
	LLMA_SENTIMENT_CONFIG=$(CURDIR)/profiles/$(PROFILE).toml scripts/with-services.sh scripts/run-demo.sh $(BIN) samples/events.jsonl

# `make test TEST_ARGS="--test worker"` runs one test target.
# Tests share one compiled-component cache; compiling it once up front keeps
# concurrent tests from all compiling the 22 MB component at the same time.
TEST_CACHE := $(CARGO_TARGET_DIR)/tmp/llma-test-cache

test: build
	LLMA_SENTIMENT_CACHE_DIR=$(TEST_CACHE) $(BIN) info >/dev/null
	LLMA_TEST_MODELS=$(MODELS) LLMA_TEST_PLUGIN=$(PLUGIN_WASM) LLMA_TEST_HOSTILE_PLUGIN=$(HOSTILE_WASM) \
	LLMA_TEST_PYTHON=$(PY) LLMA_TEST_REPO=$(CURDIR) \
	cargo test $(CARGO_PKGS) $(TEST_ARGS)

# The production model needs a reachable model hub (not these machines).
model: | venv
	$(LLMA_VENV)/bin/pip install 'optimum[onnxruntime]'
	$(LLMA_VENV)/bin/optimum-cli export onnx --model cardiffnlp/twitter-roberta-base-sentiment-latest \
		--task text-classification $(MODELS)/twitter-roberta-base-sentiment-latest

clean:
	rm -rf build

# Fault injection on real servers (ClickHouse down 30 s, Temporal restarted,
# worker SIGKILLed mid-batch, an unstorable event in a batch) and 100_000 fuzz
# cases per property; prints a table. Takes ~20 minutes on 2 cores, so it is
# not part of `make test` (which runs the fuzz properties at 256 cases).
# LLMA_FUZZ_CASES=N overrides the case count.
reliability: build
	LLMA_TEST_MODELS=$(MODELS) LLMA_TEST_PLUGIN=$(PLUGIN_WASM) LLMA_TEST_HOSTILE_PLUGIN=$(HOSTILE_WASM) \
	LLMA_TEST_PYTHON=$(PY) LLMA_TEST_REPO=$(CURDIR) \
	scripts/reliability.sh
