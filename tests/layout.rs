//! The shape of `src/`, checked so that it stays as the code grows (`../shared/LAYOUT.md`):
//! the layers' arrows, no circle between folders, only `aws/` sends SDK requests, a pure
//! `domain/`, and the size limits. Reads the source as text: no stack needed.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Each part of the crate and its layer: a file uses only its own part and lower layers.
const LAYERS: [(&str, u8); 14] = [
    ("domain", 0),
    ("config", 1),
    ("aws", 1),
    ("pacing", 2),
    ("services", 3),
    ("invocation", 3),
    ("inventory", 4),
    ("run", 5),
    ("evidence", 5),
    ("telemetry", 6),
    ("entry", 7),
    ("main", 8),
    // The crate root declares the modules and pins the SDK's behaviour version.
    ("lib", 9),
    ("behavior_version", 0),
];

/// Uses across a layer's own width that the layout allows: the run reads what a report says
/// through `evidence::contents`, and nothing else of `evidence`.
const ALLOWED_ACROSS: [(&str, &str); 1] = [("run", "evidence::contents")];

fn layer(part: &str) -> u8 {
    LAYERS
        .iter()
        .find(|(p, _)| *p == part)
        .map(|(_, l)| *l)
        .unwrap_or_else(|| panic!("`{part}` is not in the layer table: add it to LAYERS"))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Every source file of `src/` with its text, keyed by its path under `src/`.
fn crate_files() -> BTreeMap<String, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut paths = Vec::new();
    sources(&src, &mut paths);
    paths
        .into_iter()
        .map(|p| {
            let rel = p
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            (rel, fs::read_to_string(&p).unwrap())
        })
        .collect()
}

/// The part a file belongs to: its top folder, or its own name at the root.
fn part_of(rel: &str) -> &str {
    match rel.split_once('/') {
        Some((folder, _)) => folder,
        None => rel.trim_end_matches(".rs"),
    }
}

/// The code of a file without its comments (line comments and doc comments).
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.split("//").next().unwrap_or("")))
}

/// The `crate::<part>[::<module>]` paths a file names, with the line of each.
fn crate_uses(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut in_use_block: Option<String> = None;
    for (n, line) in code_lines(text) {
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + 7..];
            if let Some(block) = after.strip_prefix('{') {
                // `use crate::{a, b::c};`: each name is a path of its own.
                in_use_block = Some(block.to_owned());
                break;
            }
            let path: String = after
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            found.push((n, path.trim_end_matches(':').to_owned()));
            rest = &after[path.len()..];
        }
        if let Some(block) = in_use_block.as_mut() {
            if !line.contains("crate::{") {
                block.push_str(line);
            }
            if line.contains("};") {
                let names = block.split("};").next().unwrap_or("").to_owned();
                for name in names.split(',') {
                    let name = name.trim();
                    if !name.is_empty() {
                        found.push((n, name.to_owned()));
                    }
                }
                in_use_block = None;
            }
        }
    }
    found
}

#[test]
fn every_use_follows_the_layer_table() {
    let mut wrong = Vec::new();
    for (rel, text) in crate_files() {
        let from = part_of(&rel);
        for (line, path) in crate_uses(&text) {
            let to = path.split("::").next().unwrap_or("");
            if to == from || to.is_empty() || to.chars().next().is_some_and(char::is_uppercase) {
                continue;
            }
            let across = ALLOWED_ACROSS
                .iter()
                .any(|(f, p)| *f == from && path.starts_with(p));
            if layer(to) >= layer(from) && !across {
                wrong.push(format!(
                    "src/{rel}:{line}: {from} (layer {}) uses crate::{path} (layer {})",
                    layer(from),
                    layer(to)
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "uses against the layer table:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn no_circle_between_folders() {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (rel, text) in crate_files() {
        let from = part_of(&rel).to_owned();
        for (_, path) in crate_uses(&text) {
            let to = path.split("::").next().unwrap_or("").to_owned();
            if to != from && LAYERS.iter().any(|(p, _)| *p == to) {
                graph.entry(from.clone()).or_default().insert(to);
            }
        }
    }
    // Depth-first search from every part; a part met again on the current path is a circle.
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == node) {
            let mut circle = path[i..].to_vec();
            circle.push(node.to_owned());
            return Some(circle);
        }
        if !done.insert(node.to_owned()) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(c) = visit(next, graph, path, done) {
                return Some(c);
            }
        }
        path.pop();
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        if let Some(circle) = visit(node, &graph, &mut Vec::new(), &mut done) {
            panic!("a circle between folders: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn only_the_aws_folder_sends_requests_and_the_domain_does_no_io() {
    let mut wrong = Vec::new();
    for (rel, text) in crate_files() {
        for (n, line) in code_lines(&text) {
            if line.contains(".send()") && part_of(&rel) != "aws" {
                wrong.push(format!("src/{rel}:{n}: sends an SDK request outside aws/"));
            }
            if part_of(&rel) == "domain" {
                for io in [
                    ".await",
                    "Instant::now",
                    "SystemTime::now",
                    "env::var",
                    "tokio::",
                ] {
                    if line.contains(io) {
                        wrong.push(format!("src/{rel}:{n}: `{io}` in the pure domain"));
                    }
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// Every S3 request names the account that must own the bucket (issue 20: a mistyped or
/// re-created bucket name gets an error, not the evidence): in each file that calls S3, as
/// many builders set `expected_bucket_owner` as there are requests sent.
#[test]
fn every_s3_request_names_the_bucket_owner() {
    let mut wrong = Vec::new();
    let mut requests = 0;
    for (rel, text) in crate_files() {
        // aws/s3/ calls S3 through its Store, which names no SDK type.
        let calls_s3 = text.contains("aws_sdk_s3::") || rel.starts_with("aws/s3/");
        if !calls_s3 || part_of(&rel) != "aws" {
            continue;
        }
        let count = |what: &str| code_lines(&text).filter(|(_, l)| l.contains(what)).count();
        let (sent, owned) = (count(".send()"), count("expected_bucket_owner("));
        requests += sent;
        if owned < sent {
            wrong.push(format!(
                "src/{rel}: {sent} S3 requests, {owned} naming the bucket owner"
            ));
        }
    }
    assert!(requests >= 9, "the S3 requests were not found ({requests})");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The line of the first `#[cfg(test)]`, or the file's length.
fn before_tests(text: &str) -> usize {
    text.lines()
        .position(|l| l.trim() == "#[cfg(test)]")
        .unwrap_or_else(|| text.lines().count())
}

#[test]
fn files_and_impl_blocks_stay_small() {
    let mut wrong = Vec::new();
    for (rel, text) in crate_files() {
        let (all, code) = (text.lines().count(), before_tests(&text));
        if all > 700 {
            wrong.push(format!("src/{rel}: {all} lines (at most 700)"));
        }
        if code > 300 {
            wrong.push(format!(
                "src/{rel}: {code} lines before its tests (at most 300)"
            ));
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if line.starts_with("impl") && line.ends_with('{') {
                let end = lines[i..].iter().position(|l| *l == "}").unwrap_or(0);
                if end > 200 {
                    wrong.push(format!(
                        "src/{rel}:{}: an impl block of {end} lines (at most 200)",
                        i + 1
                    ));
                }
            }
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn errors_are_typed_not_strings() {
    let mut wrong = Vec::new();
    for (rel, text) in crate_files() {
        for (n, line) in code_lines(
            &text[..text
                .lines()
                .take(before_tests(&text))
                .map(|l| l.len() + 1)
                .sum::<usize>()
                .min(text.len())],
        ) {
            let squeezed: String = line.chars().filter(|c| !c.is_whitespace()).collect();
            if squeezed.contains(",String>") && squeezed.contains("Result<") {
                wrong.push(format!("src/{rel}:{n}: Result<_, String>"));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "errors should be types that keep their cause:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_checker_sees_a_use_against_the_table() {
    // The checker itself: a domain file naming the run would be caught.
    let uses =
        crate_uses("use crate::run::summary::RunSummary;\nuse crate::{aws::s3, domain::arn};\n");
    let parts: Vec<&str> = uses
        .iter()
        .map(|(_, p)| p.split("::").next().unwrap())
        .collect();
    assert_eq!(parts, ["run", "aws", "domain"]);
    assert!(layer("run") >= layer("domain"));
    assert_eq!(part_of("run/plan.rs"), "run");
    assert_eq!(part_of("services.rs"), "services");
}
