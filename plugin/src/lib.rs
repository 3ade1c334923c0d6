//! The sentiment plugin: extraction, inference and aggregation. Compiled to
//! `wasm32-wasip2` it is a WASI component exporting `llma:sentiment/sentiment`;
//! compiled natively it is an ordinary library: extraction and aggregation
//! always, inference (tract, tokenizers) with the feature `native` (the
//! bundle tests, native benchmarks).

pub mod aggregate;
pub mod batch;
#[cfg(any(target_arch = "wasm32", feature = "native"))]
mod plan_ops;
pub mod broadcast;
#[cfg(any(target_arch = "wasm32", feature = "native"))]
pub mod cumsum;
pub mod extract;
pub mod gelu;
pub mod int8;
#[cfg(any(target_arch = "wasm32", feature = "native"))]
pub mod model;
pub mod types;

#[cfg(target_arch = "wasm32")]
mod component;
#[cfg(all(feature = "plugin-gemm", target_arch = "wasm32", target_feature = "simd128"))]
mod kernel;
#[cfg(target_arch = "wasm32")]
mod preinit;

/// The WIT interface version this plugin implements.
pub const INTERFACE_VERSION: &str = "1.1.0";
