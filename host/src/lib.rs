//! llma-sentiment host: runs the sentiment plugin (a WASI component) under
//! wasmtime with deadlines and fuel, for the CLI and the Temporal worker.

pub mod active_version;
pub mod browse;
pub mod admin;
pub mod cache;
pub mod cli;
pub mod config;
pub mod embedded;
pub mod engine;
pub mod event;
pub mod http_server;
pub mod jsonl;
pub mod logging;
pub mod memory_budget;
pub mod metrics;
pub mod ops_server;
pub mod outcome;
pub mod pipeline;
pub mod pool;
pub mod progress;
pub mod query;
pub mod registry;
pub mod schedule;
pub mod secret;
pub mod signature;
pub mod single_flight;
pub mod sink;
pub mod source;
pub mod tls;
pub mod view;
pub mod watcher;
pub mod worker;

#[cfg(test)]
mod import_graph;

/// The layout table (docs/architecture.md) against the tree: every path it names exists,
/// and every module of `host/src`, every top-level directory and every
/// directory of `tests/` is named.
#[cfg(test)]
mod layout_table {
    use std::path::Path;

    /// The paths of the table's first column. In a cell, the first path is
    /// from the repository root and the next ones are beside it
    /// (`host/src/config.rs`, `config/` is `host/src/config/`).
    fn listed() -> Vec<String> {
        let readme = include_str!("../../docs/architecture.md");
        let table = &readme[readme.find("## Layout").unwrap()..readme.find("## Where to read on").unwrap()];
        let mut out = Vec::new();
        for line in table.lines().filter(|l| l.starts_with("| `")) {
            let cell = line.trim_start_matches("| ").split(" | ").next().unwrap();
            let mut base = String::new();
            for (i, token) in cell.split(", ").enumerate() {
                let path = token.trim_matches('`');
                if i == 0 {
                    base = match path.trim_end_matches('/').rfind('/') {
                        Some(at) => path[..=at].to_string(),
                        None => String::new(),
                    };
                    out.push(path.to_string());
                } else {
                    out.push(format!("{base}{path}"));
                }
            }
        }
        out
    }

    #[test]
    fn readme_layout_table_matches_the_tree() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        let listed = listed();
        for path in &listed {
            assert!(root.join(path).exists(), "README layout names {path}, which does not exist");
        }
        let named = |p: &str| listed.iter().any(|l| l.trim_end_matches('/') == p || l.starts_with(&format!("{p}/")));
        let entries = |dir: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(root.join(dir))
                .unwrap()
                .map(|e| e.unwrap())
                .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
                .map(|e| format!("{dir}/{}", e.file_name().to_string_lossy()))
                .collect();
            v.sort();
            v
        };
        let mut wanted = entries("host/src");
        wanted.extend(entries("tests").into_iter().filter(|p| root.join(p).is_dir()));
        for top in ["wit", "plugin", "host", "models", "tests", "samples", "scripts"] {
            wanted.push(top.to_string());
        }
        let missing: Vec<&String> = wanted.iter().filter(|p| !named(p)).collect();
        assert!(missing.is_empty(), "README layout table lacks {missing:?}");
    }
}
