//! The commands the documentation shows still work, and print what it says.
//!
//! Every fenced code block whose info string is `sh runnable` in README.md,
//! docs/*.md, traces/README.md and notebooks/README.md is run with `sh -e`
//! in a fresh temporary folder (with `scenarios/`, `traces/` and `profiles/`
//! linked in read-only use and the test's `memfabric` binary first on PATH),
//! under a time limit, and must exit 0. When the next block is a `text
//! output` block, the commands' stdout must equal it. Mark only commands that
//! are quick and safe anywhere (no KVM, no root, no network, no release
//! build); see docs/development.md.

mod common;

use common::process::run_split;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const BLOCK_TIMEOUT: Duration = Duration::from_secs(120);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// A fenced code block: its file, first line number, info string and text.
#[derive(Debug)]
struct Block {
    file: PathBuf,
    line: usize,
    info: String,
    text: String,
}

/// The top-level fenced blocks of a Markdown text.
fn blocks(file: &Path, markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open: Option<Block> = None;
    for (i, line) in markdown.lines().enumerate() {
        match (&mut open, line.strip_prefix("```")) {
            (None, Some(info)) => {
                open = Some(Block { file: file.to_path_buf(), line: i + 1, info: info.trim().to_string(), text: String::new() })
            }
            (Some(_), Some(rest)) if rest.trim().is_empty() => out.push(open.take().expect("open block")),
            (Some(b), _) => {
                b.text.push_str(line);
                b.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(open.is_none(), "{}: a code block is not closed", file.display());
    out
}

/// The runnable blocks, each with the expected output when one follows.
fn runnable() -> Vec<(Block, Option<String>)> {
    let root = repo();
    let mut files = vec![root.join("README.md"), root.join("traces/README.md"), root.join("notebooks/README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let mut out = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let mut all = blocks(&file, &text).into_iter().peekable();
        while let Some(b) = all.next() {
            let words: Vec<&str> = b.info.split_whitespace().collect();
            if words.first() == Some(&"sh") && words.contains(&"runnable") {
                // An output block must follow directly (blank lines only).
                let expected = match all.peek() {
                    Some(next) if next.info == "text output" && only_blank_between(&text, b.line, b.text.lines().count(), next.line) => {
                        Some(all.next().expect("peeked").text)
                    }
                    _ => None,
                };
                out.push((b, expected));
            }
        }
    }
    out
}

/// Whether only blank lines lie between the block starting at `line` (of
/// `len` lines) and the one starting at `next`.
fn only_blank_between(text: &str, line: usize, len: usize, next: usize) -> bool {
    let end = line + len + 1; // closing fence, 1-based
    text.lines().skip(end).take(next.saturating_sub(end + 1)).all(|l| l.trim().is_empty())
}

/// A fresh folder with the repository's inputs linked in.
fn sandbox(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("memfabric-docs-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for name in ["scenarios", "traces", "profiles"] {
        std::os::unix::fs::symlink(repo().join(name), dir.join(name)).unwrap();
    }
    dir
}

#[test]
fn documented_commands_run_and_print_what_the_docs_show() {
    let blocks = runnable();
    // The docs mark at least these: README, scenario.md (check/run, schema),
    // traces/README.md (two `trace stats` with their output).
    assert!(blocks.len() >= 5, "only {} runnable blocks found: {blocks:#?}", blocks.len());
    assert!(blocks.iter().filter(|(_, o)| o.is_some()).count() >= 2, "output blocks not found");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_memfabric")).parent().unwrap().to_path_buf();
    let path = std::env::join_paths(std::iter::once(bin_dir).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())))
        .unwrap();
    let mut failures = Vec::new();
    for (i, (b, expected)) in blocks.iter().enumerate() {
        let dir = sandbox(&i.to_string());
        let (ok, stdout, stderr) = run_split(
            Command::new("sh").arg("-ec").arg(&b.text).current_dir(&dir).env("PATH", &path),
            BLOCK_TIMEOUT,
        );
        let at = format!("{}:{}", b.file.strip_prefix(repo()).unwrap_or(&b.file).display(), b.line);
        if !ok {
            failures.push(format!("{at}: failed:\n{}\n--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}", b.text));
        } else if let Some(want) = expected {
            if &stdout != want {
                failures.push(format!("{at}: printed something else than its output block:\n--- got ---\n{stdout}--- documented ---\n{want}"));
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn block_parsing_finds_runnable_blocks_and_their_output() {
    let md = "text\n```sh runnable\nmemfabric archetypes\n```\n\n```text output\nhello\n```\n```sh\nnot runnable\n```\n";
    let bs = blocks(Path::new("x.md"), md);
    assert_eq!(bs.len(), 3);
    assert_eq!((bs[0].line, bs[0].info.as_str(), bs[0].text.as_str()), (2, "sh runnable", "memfabric archetypes\n"));
    assert!(only_blank_between(md, 2, 1, 6));
    assert_eq!(bs[1].text, "hello\n");
    assert_eq!(bs[2].info, "sh");
}
