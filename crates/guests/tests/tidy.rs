//! House rules, checked over the whole repository rather than kept by
//! discipline alone: every Rust file opens with a module doc comment (`//!`),
//! no file is over 800 lines without a written reason, and the files of each
//! crate import one another without circles.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files allowed past 800 lines, each with the reason it stays whole.
const LONG_FILES: &[(&str, &str)] = &[(
    "crates/store/src/postgres.rs",
    "the PostgreSQL store: one trait implementation, split only with its SQLite twin",
)];

const MAX_LINES: usize = 800;

fn repo() -> PathBuf {
    kiln_guests::repo_root()
}

/// Every `.rs` file under `dir`, skipping build output.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if name == "target" || name.to_string_lossy().starts_with('.') {
            continue;
        }
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&repo().join("crates"), &mut files);
    rust_files(&repo().join("examples"), &mut files);
    files.sort();
    assert!(files.len() > 50, "found only {} files", files.len());
    files
}

fn relative(path: &Path) -> String {
    path.strip_prefix(repo())
        .unwrap_or(path)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_rust_file_opens_with_a_module_doc_comment() {
    let missing: Vec<String> = all_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .map(|path| relative(&path))
        .collect();
    assert!(missing.is_empty(), "no `//!` module doc: {missing:#?}");
}

#[test]
fn no_file_is_over_800_lines_without_a_reason() {
    let long: Vec<(String, usize)> = all_files()
        .into_iter()
        .map(|path| {
            let lines = std::fs::read_to_string(&path)
                .unwrap_or_default()
                .lines()
                .count();
            (relative(&path), lines)
        })
        .filter(|(path, lines)| {
            *lines > MAX_LINES && !LONG_FILES.iter().any(|(allowed, _)| allowed == path)
        })
        .collect();
    assert!(
        long.is_empty(),
        "over {MAX_LINES} lines (split them, or give a reason in LONG_FILES): {long:?}"
    );
}

/// The module a file is, relative to its crate's `src`: `invoke/call` for
/// `src/invoke/call.rs`, `invoke` for `src/invoke/mod.rs`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file
        .strip_prefix(src)
        .expect("under src")
        .with_extension("");
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts.join("/")
}

/// The file-module a path names (`crate::a::b` from anywhere, `super::x` from
/// `parent`): the deepest prefix that is a module of the crate.
fn resolve(modules: &BTreeSet<String>, segments: &[&str]) -> Option<String> {
    (1..=segments.len())
        .rev()
        .map(|n| segments[..n].join("/"))
        .find(|candidate| modules.contains(candidate))
}

/// Edges between the files of one crate, from `crate::` and `super::` paths in
/// code (comments skipped). The crate root is not a node: everything hangs off it.
fn import_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    let modules: BTreeSet<String> = files.iter().map(|f| module_of(src, f)).collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let from = module_of(src, file);
        if from == "lib" || from == "main" {
            continue;
        }
        let is_folder = file.ends_with("mod.rs");
        let parent: Vec<&str> = if is_folder {
            from.split('/').collect()
        } else {
            from.split('/').collect::<Vec<_>>()[..from.matches('/').count()].to_vec()
        };
        let text = std::fs::read_to_string(file).unwrap_or_default();
        let code = text
            .lines()
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
        let idents = |rest: &str| -> Vec<String> {
            rest.split("::")
                .map(|s| {
                    s.chars()
                        .take_while(|c| c.is_alphanumeric() || *c == '_')
                        .collect::<String>()
                })
                .take_while(|s| !s.is_empty())
                .collect()
        };
        let mut targets = Vec::new();
        for (i, _) in code.match_indices("crate::") {
            let path = idents(&code[i + "crate::".len()..]);
            let segments: Vec<&str> = path.iter().map(String::as_str).collect();
            targets.extend(resolve(&modules, &segments));
        }
        for (i, _) in code.match_indices("super::") {
            let path = idents(&code[i + "super::".len()..]);
            let mut segments: Vec<&str> = parent.clone();
            if is_folder {
                segments.pop();
            }
            segments.extend(path.iter().map(String::as_str));
            targets.extend(resolve(&modules, &segments));
        }
        let edges = graph.entry(from.clone()).or_default();
        for to in targets {
            // A file naming its own folder's items (`invoke/call` using a type of
            // `invoke`) is counted; a file naming itself is not.
            if to != from && to != "lib" && to != "main" {
                edges.insert(to);
            }
        }
    }
    graph
}

/// A circle in `graph`, if there is one.
fn find_circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut circle = path[at..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

#[test]
fn no_crate_has_an_import_circle_between_its_files() {
    let crates = repo().join("crates");
    let mut circles = Vec::new();
    for entry in std::fs::read_dir(&crates).expect("crates/").flatten() {
        let src = entry.path().join("src");
        if src.is_dir()
            && let Some(circle) = find_circle(&import_graph(&src))
        {
            circles.push(format!("{}: {}", relative(&src), circle.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn the_circle_check_finds_a_circle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        find_circle(&graph),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
