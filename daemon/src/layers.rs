//! The layers of `daemon/src`, checked: every `crate::` path in a module
//! names a module of its own layer or a lower one, and no two top-level
//! modules import each other, directly or around a circle. The layers and
//! why they are so: docs/design.md.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. Core state may use only core; each engine the engines
/// before it; the gateway composes them; methods, sessions, the server
/// and start are built on it, in that order.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "core",
        &[
            "auth",
            "audit",
            "budget",
            "clock",
            "config",
            "env_file",
            "events",
            "fsutil",
            "holds",
            "identity",
            "install",
            "lifecycle",
            "lock",
            "logging",
            "output",
            "metrics",
            "paths",
            "supervisor",
            "tls",
        ],
    ),
    ("restart engine", &["restart"]),
    ("auto-update engine", &["autoupdate"]),
    ("update engine", &["update"]),
    ("composition", &["gateway"]),
    ("methods", &["methods"]),
    ("session", &["session"]),
    ("server", &["server"]),
    ("start", &["start"]),
];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS
        .iter()
        .position(|(_, modules)| modules.contains(&module))
}

/// The top-level module a source file belongs to (`None` for the crate
/// root files, which only declare modules).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (!matches!(name, "lib" | "main" | "layers")).then(|| name.to_owned())
}

/// Every top-level module named by a `crate::` path in `text`, including
/// the grouped form `crate::{a, b::c}`.
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        // `molt_daemon::` or `$crate::` is not this crate's path syntax.
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        let rest = &text[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            found.extend(group.split(',').map(|p| ident(p.trim())));
        } else {
            found.insert(ident(rest));
        }
    }
    found.retain(|m| !m.is_empty());
    found
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Top-level module → the modules it names, with the file that names each.
fn imports() -> BTreeMap<String, BTreeMap<String, PathBuf>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeMap<String, PathBuf>> = BTreeMap::new();
    for file in files {
        let Some(module) = module_of(&src, &file) else {
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let uses = graph.entry(module.clone()).or_default();
        for used in crate_paths(&text) {
            if used != module {
                uses.entry(used).or_insert_with(|| file.clone());
            }
        }
    }
    graph
}

#[test]
fn every_module_has_a_layer_and_uses_only_its_own_or_lower_ones() {
    let mut wrong = Vec::new();
    for (module, uses) in imports() {
        let Some(own) = layer_of(&module) else {
            wrong.push(format!("{module} is in no layer"));
            continue;
        };
        for (used, file) in uses {
            match layer_of(&used) {
                Some(layer) if layer <= own => {}
                Some(layer) => wrong.push(format!(
                    "{} ({}) uses {used} ({})",
                    file.display(),
                    LAYERS[own].0,
                    LAYERS[layer].0
                )),
                None => wrong.push(format!("{} uses {used}, in no layer", file.display())),
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn no_top_level_modules_import_each_other_around_a_circle() {
    let graph = imports();
    // Depth-first search for a back edge, reporting the circle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeMap<String, PathBuf>>,
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
        for next in graph.get(node).into_iter().flat_map(|uses| uses.keys()) {
            if let Some(circle) = visit(next, graph, path, done) {
                return Some(circle);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    for module in graph.keys() {
        if let Some(circle) = visit(module, &graph, &mut Vec::new(), &mut done) {
            panic!("import circle: {}", circle.join(" → "));
        }
    }
}

#[test]
fn the_checker_sees_plain_grouped_and_inline_paths() {
    let text = "use crate::fsutil::path_error;\nuse crate::{install, server::serve};\n\
                let t = crate::clock::unix_ms(); // molt_daemon::gateway::x, $crate::y\n";
    assert_eq!(
        crate_paths(text).into_iter().collect::<Vec<_>>(),
        ["clock", "fsutil", "install", "server"]
    );
}
