//! Splitting a scenario's text at its top-level table headers, so that the
//! `[[vms]]` entries of a large scenario are parsed one at a time.
//!
//! The `toml` crate parses a whole document into a token list, an event list
//! and a tree before anything is deserialized: about 20 bytes of memory per
//! byte of text, for a scenario of 100,000 listed VMs (docs/development.md,
//! "Scenario loading memory"). A scenario's `[[vms]]` entries are independent
//! array-of-tables elements, so [`split`] cuts each one out (with the
//! `[vms.workload]` table that follows it) and gathers every other section,
//! in file order, into a small "rest" document; the loader parses the rest,
//! then each entry on its own, and keeps only the resolved VMs.
//!
//! The cut uses the TOML lexer itself, so a `[` that opens a line is taken for
//! a header only outside arrays and inline tables, never inside a string.
//! Anything this module does not recognise as the plain layout (a header that
//! names `vms` in another form, a `[vms.workload]` that does not follow its
//! `[[vms]]`, brackets that do not balance) returns `None`, and the loader
//! parses the whole document as one. A document the split accepts means the
//! same split as whole; the loader still parses the whole document whenever
//! the split path refuses anything, so every error message comes from the
//! whole-document parse, unchanged.

use std::ops::Range;
use toml_parser::lexer::TokenKind;

/// A document cut into its `[[vms]]` entries and everything else.
#[derive(Debug)]
pub(super) struct Split {
    /// Every section that is not a VM entry, in file order (root keys first).
    pub rest: String,
    /// Byte ranges of the VM entries in the text, in file order: each a
    /// `[[vms]]` header line to the line before the next header that is not
    /// its `[vms.workload]`.
    pub vm_entries: Vec<Range<usize>>,
}

/// What a header line opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    /// Root keys or any table other than a VM entry.
    Rest,
    /// A `[[vms]]` entry and its sub-tables.
    Vm,
}

/// Cuts `text` into its VM entries and the rest; `None` when it has no
/// `[[vms]]` header or a layout the cut does not handle (see the module docs).
pub(super) fn split(text: &str) -> Option<Split> {
    let mut lexer = toml_parser::Source::new(text).lex();
    let mut out = Split { rest: String::new(), vm_entries: Vec::new() };
    // The open section: its kind and first byte.
    let (mut kind, mut start) = (Section::Rest, 0usize);
    let close = |kind: Section, range: Range<usize>, out: &mut Split| match kind {
        Section::Rest => out.rest.push_str(&text[range]),
        Section::Vm => out.vm_entries.push(range),
    };
    // Arrays and inline tables open around the current token.
    let mut depth = 0usize;
    // Whether only whitespace came since the last newline, and where that line began.
    let (mut line_start, mut line_begin) = (true, 0usize);
    let mut header = String::new();
    while let Some(token) = lexer.next() {
        match token.kind() {
            TokenKind::Eof => break,
            TokenKind::Newline => (line_start, line_begin) = (true, token.span().end()),
            TokenKind::Whitespace | TokenKind::Comment => {}
            TokenKind::LeftSquareBracket if line_start && depth == 0 => {
                // A table header: its tokens up to the end of the line,
                // without whitespace and comment.
                let header_line = line_begin;
                header.clear();
                header.push('[');
                for t in lexer.by_ref() {
                    match t.kind() {
                        TokenKind::Newline => {
                            (line_start, line_begin) = (true, t.span().end());
                            break;
                        }
                        TokenKind::Eof => break,
                        TokenKind::Whitespace | TokenKind::Comment => {}
                        _ => header.push_str(&text[t.span().start()..t.span().end()]),
                    }
                }
                let opens = match header.as_str() {
                    "[[vms]]" => Section::Vm,
                    // Part of the entry it follows; anywhere else it would
                    // extend an entry out of order.
                    "[vms.workload]" if kind == Section::Vm => continue,
                    h if h.contains("vms") => return None,
                    _ => Section::Rest,
                };
                close(kind, start..header_line, &mut out);
                (kind, start) = (opens, header_line);
            }
            TokenKind::LeftSquareBracket | TokenKind::LeftCurlyBracket => (depth, line_start) = (depth + 1, false),
            TokenKind::RightSquareBracket | TokenKind::RightCurlyBracket => (depth, line_start) = (depth.checked_sub(1)?, false),
            _ => line_start = false,
        }
    }
    close(kind, start..text.len(), &mut out);
    (!out.vm_entries.is_empty() && depth == 0).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str) -> Option<(String, Vec<&str>)> {
        split(text).map(|s| (s.rest, s.vm_entries.iter().map(|r| &text[r.clone()]).collect()))
    }

    #[test]
    fn entries_are_cut_with_their_workload_and_the_rest_keeps_file_order() {
        let text = "a = 1\n[scenario]\nname = \"x\"\n[[vms]]\nname = \"v0\"\n[vms.workload]\nzero = \"1%\"\n  [[sites]] # c\nname = \"s\"\n[[vms]]\nname = \"v1\"";
        let (rest, vms) = cut(text).unwrap();
        assert_eq!(rest, "a = 1\n[scenario]\nname = \"x\"\n  [[sites]] # c\nname = \"s\"\n");
        assert_eq!(vms, ["[[vms]]\nname = \"v0\"\n[vms.workload]\nzero = \"1%\"\n", "[[vms]]\nname = \"v1\""]);
    }

    #[test]
    fn brackets_inside_strings_and_arrays_are_not_headers() {
        let text = "[scenario]\ndescription = \"\"\"\n[[vms]]\n\"\"\"\nx = [\n[1],\n]\ny = '''\n[[vms]]'''\n[[vms]]\nname = \"v\"\n";
        let (rest, vms) = cut(text).unwrap();
        assert_eq!(rest, &text[..text.rfind("[[vms]]\nname").unwrap()]);
        assert_eq!(vms, ["[[vms]]\nname = \"v\"\n"]);
    }

    #[test]
    fn other_layouts_are_left_to_the_whole_document_parse() {
        for text in [
            // No entry to cut.
            "[scenario]\nname = \"x\"\n",
            // vms spelt otherwise, or extended out of order.
            "[[ \"vms\" ]]\nname = \"v\"\n",
            "[[vms]]\nname = \"v\"\n[[links]]\n[vms.workload]\nzero = \"1%\"\n",
            "[vms.workload]\n",
            // Unbalanced brackets.
            "[[vms]]\nname = \"v\"\nx = ]\n",
            "[[vms]]\nname = \"v\"\nx = [\n",
        ] {
            assert!(split(text).is_none(), "{text:?}");
        }
    }
}
