//! No import circles between the host's modules (test only).
//!
//! Reads every module's source (tests left out), resolves each `crate::` and
//! `super::` path to the deepest module that exists, and lifts every edge to
//! the two siblings below the modules' common ancestor: `sink::client` using
//! `crate::event` is an edge `sink -> event` among the crate's top-level
//! modules, `worker::activity` using `super::options` one `activity ->
//! options` inside `worker`. A parent and its own children (re-exports) are
//! not an edge. Every such graph must be acyclic: layers import downwards.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

type Module = Vec<String>;

/// Every module of `host/src` (by its path of names) and its source up to its
/// first `#[cfg(test)]`, comments removed.
fn modules(src: &Path) -> BTreeMap<Module, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let rel = path.strip_prefix(src).unwrap().with_extension("");
            let mut names: Module = rel.iter().map(|s| s.to_string_lossy().into_owned()).collect();
            if path.extension().is_none_or(|e| e != "rs") || names == ["main"] {
                continue;
            }
            if names == ["lib"] || names.last().is_some_and(|n| n == "mod") {
                names.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code = text.split("#[cfg(test)]").next().unwrap();
            let code: String = code.lines().map(|l| l.split("//").next().unwrap()).collect::<Vec<_>>().join("\n");
            out.insert(names, code);
        }
    }
    out
}

/// The absolute paths `code` (in module `at`) names: `crate::a::b`,
/// `super::c`, and each item of a `{...}` group after either.
fn paths(at: &Module, code: &str) -> Vec<Module> {
    let mut out = Vec::new();
    let bytes = code.as_bytes();
    let word = |b: u8| b.is_ascii_alphanumeric() || b == b'_';
    let mut i = 0;
    while i < bytes.len() {
        let starts = (code[i..].starts_with("crate::") || code[i..].starts_with("super::")) && (i == 0 || !word(bytes[i - 1]));
        if !starts {
            i += 1;
            continue;
        }
        let end = i + code[i..].find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')).unwrap_or(code.len() - i);
        let segments: Vec<&str> = code[i..end].split("::").filter(|s| !s.is_empty()).collect();
        let mut base: Module = if segments[0] == "crate" { Vec::new() } else { at.clone() };
        for s in &segments {
            match *s {
                "crate" => {}
                "super" => {
                    base.pop();
                }
                name => base.push(name.to_string()),
            }
        }
        if code[end..].starts_with('{') {
            let group = &code[end + 1..end + code[end..].find('}').unwrap_or(0)];
            for item in group.split(',') {
                let item = item.trim().split(" as ").next().unwrap().trim();
                let mut p = base.clone();
                for s in item.split("::") {
                    match s {
                        "" | "self" => {}
                        "super" => {
                            p.pop();
                        }
                        name => p.push(name.to_string()),
                    }
                }
                out.push(p);
            }
        }
        out.push(base);
        i = end;
    }
    out
}

/// Per parent module: the edges between its children.
fn sibling_edges(src: &Path) -> BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> {
    let modules = modules(src);
    let resolve = |p: &Module| (0..=p.len()).rev().map(|n| p[..n].to_vec()).find(|m| modules.contains_key(m));
    let mut scopes: BTreeMap<Module, BTreeMap<String, BTreeSet<String>>> = BTreeMap::new();
    for (at, code) in &modules {
        for target in paths(at, code).iter().filter_map(resolve) {
            let common = at.iter().zip(&target).take_while(|(a, b)| a == b).count();
            if common < at.len() && common < target.len() {
                let scope = at[..common].to_vec();
                scopes.entry(scope).or_default().entry(at[common].clone()).or_default().insert(target[common].clone());
            }
        }
    }
    scopes
}

/// One circle of `graph`, if it has any (depth-first search).
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        done: &mut BTreeSet<&'a str>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|n| *n == node) {
            let mut c: Vec<String> = stack[at..].iter().map(|s| s.to_string()).collect();
            c.push(node.to_string());
            return Some(c);
        }
        if !done.insert(node) {
            return None;
        }
        stack.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, done, stack) {
                return Some(c);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    graph.keys().find_map(|n| visit(n, graph, &mut done, &mut Vec::new()))
}

#[test]
fn host_modules_import_without_circles() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let circles: Vec<String> = sibling_edges(&src)
        .iter()
        .filter_map(|(scope, graph)| circle(graph).map(|c| format!("in crate::{}: {}", scope.join("::"), c.join(" -> "))))
        .collect();
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

/// The check can fail: a circle planted in a scratch tree is found.
#[test]
fn a_planted_circle_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let write = |p: &str, s: &str| {
        let path = dir.path().join(p);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, s).unwrap();
    };
    write("lib.rs", "pub mod a; pub mod b; pub mod c; pub mod w;");
    write("a.rs", "use crate::b::Thing; // crate::w in a comment is no edge\n");
    write("b.rs", "pub fn f() { crate::w::g() }\n#[cfg(test)]\nmod t { use crate::a::X; }\n");
    write("c.rs", "pub struct C;");
    write("w/mod.rs", "mod x; mod y; pub use x::*;");
    write("w/x.rs", "use super::y::Y;");
    write("w/y.rs", "use super::{x::X, super::c::C};");
    let edges = sibling_edges(dir.path());
    let root = &edges[&Vec::new()];
    let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    assert_eq!((&root["a"], &root["b"], &root["w"]), (&names(&["b"]), &names(&["w"]), &names(&["c"])), "{edges:?}");
    assert_eq!(circle(root), None);
    assert_eq!(circle(&edges[&vec!["w".to_string()]]), Some(vec!["x".into(), "y".into(), "x".into()]));
}
