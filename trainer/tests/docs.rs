//! The documentation cannot drift from the CLI: every `ddis` command in a
//! shell block of the README, `docs/*.md` and the model cards is parsed by
//! the real argument parser, and the README's and the guide's commands that
//! need no training and run in seconds (`demo`, `inspect`, `reconstruct --artifact`, the shipped-model
//! reconstruction, the exact-posterior evaluation on a small dataset) are
//! run exactly as written, in document order, in a scratch folder that
//! sees the shipped `models/`.
//!
//! Usage synopses (`ddis demo [--pde darcy|poisson] [--seed 3]`) are parsed
//! with every optional part present and the first of each `a|b`
//! alternative; placeholders in capitals (`DIR`, `FILE`) stay as written.

use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Parser;
use ddis_trainer::cli::Cli;

/// Fewest commands the documents must hold (a guard against an extractor
/// that silently finds nothing).
const MIN_COMMANDS: usize = 25;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").canonicalize().unwrap()
}

/// The documents whose commands are checked.
fn documents() -> Vec<PathBuf> {
    let root = repo();
    let mut docs = vec![root.join("README.md")];
    for dir in ["docs", "models"] {
        let mut md: Vec<PathBuf> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "md"))
            .collect();
        md.sort();
        docs.extend(md);
    }
    docs
}

/// One command found in a document.
#[derive(Debug)]
struct DocCommand {
    /// `file:line` of its first line.
    place: String,
    /// The arguments after `ddis` (or after `cargo run ... --`).
    args: String,
    /// In a block marked `<!-- doc-test: parse-only ... -->` (it needs
    /// trained runs or hardware): parsed, never run.
    parse_only: bool,
}

/// The marker, in an HTML comment on the line before a block, that keeps
/// the block's commands from being run.
const PARSE_ONLY: &str = "doc-test: parse-only";

/// Every `ddis` command in the fenced shell blocks of `text`, continuation
/// lines joined, comments dropped, `a && b` split.
fn commands(name: &str, text: &str) -> Vec<DocCommand> {
    let mut out = vec![];
    let mut in_block = false;
    let mut shell = false;
    let mut pending = String::new();
    let mut start = 0;
    let mut previous = "";
    let mut parse_only = false;
    for (k, line) in text.lines().enumerate() {
        let trimmed = line.trim();
        if let Some(lang) = trimmed.strip_prefix("```") {
            in_block = !in_block;
            shell = in_block && matches!(lang.trim(), "sh" | "bash" | "console" | "shell" | "");
            parse_only = in_block && previous.contains(PARSE_ONLY);
            continue;
        }
        if !trimmed.is_empty() {
            previous = trimmed;
        }
        if !(in_block && shell) {
            continue;
        }
        if pending.is_empty() {
            start = k + 1;
        }
        let body = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if let Some(cont) = body.strip_suffix('\\') {
            pending.push_str(cont);
            pending.push(' ');
            continue;
        }
        pending.push_str(body);
        let full = std::mem::take(&mut pending);
        let code = strip_comment(&full);
        for part in code.split("&&").flat_map(|p| p.split(';')) {
            let part = part.trim().trim_start_matches('(').trim_end_matches(')').trim();
            let args = if let Some(rest) = part.strip_prefix("ddis ") {
                Some(rest)
            } else if part.starts_with("cargo run") && part.contains("-p ddis-trainer") {
                part.split_once(" -- ").map(|(_, rest)| rest)
            } else {
                None
            };
            if let Some(args) = args {
                out.push(DocCommand { place: format!("{name}:{start}"), args: args.trim().to_string(), parse_only });
            }
        }
    }
    out
}

/// The text before an unquoted `#`.
fn strip_comment(line: &str) -> &str {
    let mut quote = None;
    for (i, c) in line.char_indices() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            ('#', None) if i == 0 || line[..i].ends_with(' ') => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Splits a command into words (single and double quotes group words).
fn words(args: &str) -> Vec<String> {
    let mut out = vec![];
    let mut cur = String::new();
    let mut quote = None;
    for c in args.chars() {
        match (c, quote) {
            ('\'' | '"', None) => quote = Some(c),
            (q, Some(open)) if q == open => quote = None,
            (' ', None) => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            _ => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// A synopsis as a concrete command: `[...]` kept without brackets, the
/// first of `a|b` alternatives.
fn concrete(args: &str) -> Vec<String> {
    words(&args.replace(['[', ']'], " "))
        .into_iter()
        .map(|w| if w.contains('|') && !w.contains('/') { w.split('|').next().unwrap().to_string() } else { w })
        .collect()
}

/// Commands run as written: no training, seconds each.
fn runnable(args: &[String]) -> bool {
    let has = |flag: &str| args.iter().any(|a| a == flag);
    let first = args.iter().find(|a| !a.starts_with('-') && a.parse::<f64>().is_err()).map(String::as_str);
    match first {
        Some("demo") | Some("inspect") => true,
        Some("reconstruct") => has("--artifact") || !(has("--prior") || has("--joint")),
        Some("eval") => args.windows(2).any(|w| {
            w[0] == "--methods" && w[1].split(',').all(|m| matches!(m.split('+').next(), Some("exact" | "device")))
        }),
        Some("data") => args.iter().any(|a| a == "gen") && count_at_most(args, 2000),
        _ => false,
    }
}

fn count_at_most(args: &[String], most: usize) -> bool {
    args.windows(2).any(|w| w[0] == "--count" && w[1].parse::<usize>().is_ok_and(|c| c <= most))
}

#[test]
fn every_documented_command_parses_and_the_quick_ones_run() {
    let root = repo();
    let mut all = vec![];
    for doc in documents() {
        let name = doc.strip_prefix(&root).unwrap().display().to_string();
        all.extend(commands(&name, &std::fs::read_to_string(&doc).unwrap()));
    }
    assert!(all.len() >= MIN_COMMANDS, "only {} commands found: {all:#?}", all.len());

    let mut failures = vec![];
    let mut skipped = vec![];
    for c in &all {
        if c.args.contains('$') {
            skipped.push(c.place.clone()); // shell variables: parsed where they are defined
            continue;
        }
        let argv = concrete(&c.args);
        if let Err(e) = Cli::try_parse_from(std::iter::once("ddis".to_string()).chain(argv.iter().cloned()))
            && e.use_stderr()
        {
            failures.push(format!("{}: `ddis {}`: {}", c.place, c.args, e.render()));
        }
    }
    assert!(failures.is_empty(), "documented commands the CLI rejects:\n{}", failures.join("\n"));
    assert!(skipped.len() * 5 <= all.len(), "too many commands skipped: {skipped:?}");

    // The quick ones, as written, in order, in one scratch folder.
    let scratch = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(root.join("models"), scratch.path().join("models")).unwrap();
    let mut ran = 0;
    for c in &all {
        if c.args.contains('$') || c.args.contains('[') || c.args.contains('|') {
            continue; // synopses and scripted loops
        }
        if c.parse_only || !(c.place.starts_with("README.md:") || c.place.starts_with("docs/guide.md:")) {
            continue; // results and model cards: parsed only (they need trained runs)
        }
        let argv = words(&c.args);
        if !runnable(&argv) {
            continue;
        }
        let o = Command::new(env!("CARGO_BIN_EXE_ddis"))
            .current_dir(scratch.path())
            .arg("--quiet")
            .args(&argv)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}: `ddis {}` failed:\n{}", c.place, c.args, String::from_utf8_lossy(&o.stderr));
        ran += 1;
    }
    assert!(ran >= 3, "only {ran} documented commands were run");
}

#[test]
fn the_extractor_reads_continuations_comments_and_synopses() {
    let text = "x\n```sh\nddis demo \\\n    --seed 4   # a comment\n(cd firmware && cargo build) && ddis inspect a.ddis\n```\n```json\nddis nope\n```\n<!-- doc-test: parse-only (trains) -->\n\n```sh\nddis train prior\n```\n";
    let found = commands("t.md", text);
    let args: Vec<&str> = found.iter().map(|c| c.args.as_str()).collect();
    assert_eq!(args, ["demo  --seed 4", "inspect a.ddis", "train prior"]);
    assert_eq!(found[0].place, "t.md:3");
    assert_eq!(found.iter().map(|c| c.parse_only).collect::<Vec<_>>(), [false, false, true]);
    assert_eq!(concrete("demo [--pde darcy|poisson] [--out demo]"), ["demo", "--pde", "darcy", "--out", "demo"]);
    assert_eq!(words("eval --methods \"a,b\" --out x"), ["eval", "--methods", "a,b", "--out", "x"]);
}
