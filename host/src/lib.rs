//! llma-sentiment host: runs the sentiment plugin (a WASI component) under
//! wasmtime with deadlines and fuel, for the CLI and the Temporal worker.

pub mod admin;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod engine;
pub mod event;
pub mod logging;
pub mod metrics;
pub mod ops_server;
pub mod pipeline;
pub mod pool;
pub mod progress;
pub mod query;
pub mod registry;
pub mod result_cache;
pub mod sink;
pub mod source;
pub mod watcher;
pub mod worker;
