//! The runtime's layering, checked from its source: no two modules import
//! each other (nor form any longer cycle), and only the transport layer
//! names the channel crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Modules with submodules of their own, each file one module.
const FOLDERS: [&str; 2] = ["ends", "transport"];

fn source_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ezq/src")
}

/// Every `.rs` file of the runtime, as (module path, code without comments).
fn modules() -> Vec<(String, String)> {
    let mut files = Vec::new();
    let mut dirs = vec![source_dir()];
    while let Some(dir) = dirs.pop() {
        for entry in fs::read_dir(&dir).expect("a source folder") {
            let path = entry.expect("an entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    let root = source_dir();
    files
        .into_iter()
        .map(|path| {
            let rel = path.strip_prefix(&root).expect("under src");
            let mut parts: Vec<String> = (rel.iter())
                .map(|p| p.to_string_lossy().trim_end_matches(".rs").to_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            let code: String = (fs::read_to_string(&path).expect("readable"))
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .map(|line| format!("{line}\n"))
                .collect();
            (parts.join("::"), code)
        })
        .collect()
}

/// Where each name the crate root re-exports comes from (`Msg` ->
/// `msg`), read from its `pub use` lines.
fn reexports() -> BTreeMap<String, String> {
    let lib = fs::read_to_string(source_dir().join("lib.rs")).expect("lib.rs");
    let mut names = BTreeMap::new();
    for line in lib.lines() {
        let Some(path) = line.strip_prefix("pub use ") else {
            continue;
        };
        let path = path.trim_end_matches(';');
        let (module, items) = match path.split_once("::{") {
            Some((m, items)) => (m, items.trim_end_matches('}')),
            None => path.rsplit_once("::").expect("a path"),
        };
        let module = match module.split_once("::") {
            Some((folder, sub)) if FOLDERS.contains(&folder) => format!("{folder}::{sub}"),
            Some((first, _)) => first.to_owned(),
            None => module.to_owned(),
        };
        for item in items.split(',') {
            names.insert(item.trim().to_owned(), module.clone());
        }
    }
    names
}

/// The module a path like `crate::ends::inbox::Inbox`, `crate::Msg` or
/// `super::source` names, seen from module `from`.
fn target(from: &str, words: &[&str], roots: &BTreeMap<String, String>) -> Option<String> {
    match words {
        ["crate", first, rest @ ..] => {
            if let (false, Some(module)) = (is_module("", first), roots.get(*first)) {
                return Some(module.clone());
            }
            match rest.first() {
                Some(sub) if FOLDERS.contains(first) && is_module(first, sub) => {
                    Some(format!("{first}::{sub}"))
                }
                _ => Some((*first).to_owned()),
            }
        }
        ["super", first, ..] => {
            let parent = from.rsplit_once("::").map_or("", |(p, _)| p);
            match is_module(parent, first) {
                true => Some(format!("{parent}::{first}")),
                false => Some(parent.to_owned()),
            }
        }
        _ => None,
    }
}

fn is_module(folder: &str, name: &str) -> bool {
    let dir = source_dir().join(folder);
    dir.join(format!("{name}.rs")).exists() || dir.join(name).join("mod.rs").exists()
}

/// Module -> the modules it uses (itself and its own folder's root aside).
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let roots = reexports();
    let mut graph = BTreeMap::new();
    for (module, code) in modules() {
        let mut uses = BTreeSet::new();
        let words: Vec<&str> = code
            .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .collect();
        for word in words {
            let parts: Vec<&str> = word.split("::").filter(|p| !p.is_empty()).collect();
            if let Some(t) = target(&module, &parts, &roots) {
                let own_folder = module.split("::").next() == Some(t.as_str());
                if t != module && !own_folder && !t.is_empty() && t != "__private" {
                    uses.insert(t);
                }
            }
        }
        graph.insert(module, uses);
    }
    graph
}

#[test]
fn no_two_runtime_modules_import_each_other() {
    let graph = imports();
    assert!(graph.contains_key("ends::inbox"), "{graph:?}");
    let mut pairs = Vec::new();
    for (a, uses) in &graph {
        for b in uses {
            if a < b && graph.get(b).is_some_and(|back| back.contains(a)) {
                pairs.push(format!("{a} <-> {b}"));
            }
        }
    }
    assert!(
        pairs.is_empty(),
        "modules that import each other: {pairs:?}"
    );
}

#[test]
fn the_runtime_modules_form_no_cycle() {
    let graph = imports();
    // Peel off modules that use nothing left; what remains is on a cycle.
    let mut left: BTreeMap<_, BTreeSet<_>> = (graph.iter())
        .filter(|(m, _)| m.as_str() != "lib" && m.as_str() != "__private")
        .map(|(m, uses)| (m.clone(), uses.clone()))
        .collect();
    loop {
        let names: BTreeSet<String> = left.keys().cloned().collect();
        let leaves: Vec<String> = (left.iter())
            .filter(|(_, uses)| uses.iter().all(|u| !names.contains(u)))
            .map(|(m, _)| m.clone())
            .collect();
        if leaves.is_empty() {
            break;
        }
        for leaf in leaves {
            left.remove(&leaf);
        }
    }
    assert!(left.is_empty(), "modules on a cycle: {left:?}");
}

#[test]
fn each_module_uses_only_the_layers_declared_above_it() {
    let lib = fs::read_to_string(source_dir().join("lib.rs")).expect("lib.rs");
    let order: Vec<&str> = (lib.lines())
        .filter_map(|l| l.trim_start_matches("pub ").strip_prefix("mod "))
        .map(|l| l.split(';').next().expect("a name"))
        .collect();
    assert!(order.len() > 10, "{order:?}");
    let position = |m: &str| {
        order
            .iter()
            .position(|o| *o == m.split("::").next().unwrap_or(m))
    };
    let mut wrong = Vec::new();
    for (module, uses) in imports() {
        let Some(at) = position(&module) else {
            continue;
        };
        for used in uses {
            if position(&used).is_some_and(|u| u > at) {
                wrong.push(format!("{module} uses {used}, declared below it"));
            }
        }
    }
    assert!(wrong.is_empty(), "{wrong:?}");
}

#[test]
fn only_the_transport_layer_names_the_channel_crate() {
    let named: Vec<String> = (modules().into_iter())
        .filter(|(_, code)| code.contains("crossbeam"))
        .map(|(m, _)| m)
        .collect();
    assert_eq!(named, ["transport::local"]);
}

#[test]
#[ignore = "prints the module graph"]
fn print_the_module_graph() {
    for (module, uses) in imports() {
        println!(
            "{module}: {}",
            uses.into_iter().collect::<Vec<_>>().join(", ")
        );
    }
}
