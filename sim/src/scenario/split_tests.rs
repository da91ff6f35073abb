//! The loader's cut at `[[vms]]` entries ([`sections`]) against the
//! whole-document parse: whenever the cut path takes a document, the
//! whole-document parse accepts it too and gives the same scenario; and the
//! loader's answer (scenario or error message) is always the whole parse's.

use super::*;

const HEAD: &str = r#"[scenario]
name = "cut"
[[sites]]
name = "a"
hosts = [{ name = "h", count = 2, cores = 8, ram = "64GiB" }]
[[sites]]
name = "b"
hosts = [{ name = "g", cores = 8, ram = "64GiB" }]
[[links]]
name = "ab"
between = ["a", "b"]
bandwidth = "1Gbit/s"
latency = "1ms"
"#;

fn ctx<'a>(text: &'a str, base: Option<&'a Path>) -> Ctx<'a> {
    Ctx { text, label: "cut.toml", base, calibration_key: true }
}

/// Checks both properties on `text`; returns whether the cut path took it.
fn agree(text: &str, base: Option<&Path>) -> bool {
    let whole = parse_whole(ctx(text, base));
    let cut = sections::split(text).and_then(|s| parse_split(ctx(text, base), s));
    if let Some(sc) = &cut {
        let whole = whole.as_ref().unwrap_or_else(|e| panic!("the cut path took what the whole parse refuses ({e}):\n{text}"));
        assert_eq!(format!("{sc:?}"), format!("{whole:?}"), "{text}");
    }
    match (parse_ctx(ctx(text, base)), whole) {
        (Ok(loaded), Ok(whole)) => {
            assert_eq!(format!("{:?}", Scenario { source_hash: String::new(), ..loaded }), format!("{whole:?}"), "{text}")
        }
        (Err(loaded), Err(whole)) => assert_eq!(loaded.to_string(), whole.to_string(), "{text}"),
        (loaded, whole) => panic!("the loader says {:?}, the whole parse {:?}:\n{text}", loaded.err(), whole.err()),
    }
    cut.is_some()
}

fn committed() -> (std::path::PathBuf, Vec<(String, String)>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    let mut paths: Vec<_> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    paths.sort();
    assert!(paths.len() >= 7, "{paths:?}");
    let texts = paths.iter().map(|p| (p.display().to_string(), std::fs::read_to_string(p).unwrap())).collect();
    (dir, texts)
}

#[test]
fn committed_scenarios_take_the_cut_path_and_agree() {
    let (dir, texts) = committed();
    for (path, text) in &texts {
        let has_entries = text.lines().any(|l| l.trim() == "[[vms]]");
        assert_eq!(agree(text, Some(&dir)), has_entries, "{path}");
    }
}

#[test]
fn every_line_deleted_or_repeated_agrees() {
    let (dir, texts) = committed();
    let mut cut = 0;
    for (_, text) in &texts {
        let lines: Vec<&str> = text.lines().collect();
        // A scenario that replays traces reads them at every parse: a few edits.
        let step = if text.contains("trace =") { 15 } else { 1 };
        for i in (0..lines.len()).step_by(step) {
            let mut deleted = lines.clone();
            deleted.remove(i);
            let mut repeated = lines.clone();
            repeated.insert(i, lines[i]);
            for edit in [deleted, repeated] {
                cut += usize::from(agree(&(edit.join("\n") + "\n"), Some(&dir)));
            }
        }
    }
    // Most edits leave a scenario the cut path takes.
    assert!(cut > 300, "{cut}");
}

#[test]
fn the_cut_path_takes_the_bench_scenarios() {
    for text in [crate::bench::listed_scenario(40), crate::bench::simgrid_scenario(30), crate::bench::multisite_scenario(200)] {
        assert!(agree(&text, None));
    }
}

#[test]
fn headers_inside_strings_other_spellings_and_layouts_agree() {
    let vm = |name: &str| format!("[[vms]]\nname = \"{name}\"\nsite = \"a\"\narchetype = \"web\"\nmemory = \"1GiB\"\n");
    let taken = [
        // A string that holds header lines, and an entry after it.
        HEAD.replace("name = \"cut\"\n", "name = \"cut\"\ndescription = \"\"\"\n[[vms]]\nname = \"ghost\"\n\"\"\"\n") + &vm("v"),
        // Comments, indentation, CRLF, a byte-order mark, workload tables.
        format!("{HEAD}  [[vms]]  # first\nname = \"v\"\nsite = \"a\"\narchetype = \"web\"\n[vms.workload] # hot\nzero = \"10%\"\n{}", vm("w")),
        format!("{HEAD}{}{}", vm("v"), vm("w")).replace('\n', "\r\n"),
        format!("\u{feff}{}{HEAD}", vm("v")),
        // Entries before and between other sections.
        format!("{}{HEAD}{}[[evacuations]]\nfrom = \"a\"\nto = \"b\"\n{}", vm("v"), vm("w"), vm("x")),
    ];
    for text in &taken {
        assert!(agree(text, None), "{text}");
    }
    let left_to_the_whole_parse = [
        // `vms` also given in the rest.
        format!("vms = []\n{HEAD}{}", vm("v")),
        format!("vms.x = 1\n{HEAD}{}", vm("v")),
        // Other spellings of the header, a workload table out of place.
        format!("{HEAD}[[ \"vms\" ]]\nname = \"v\"\nsite = \"a\"\narchetype = \"web\"\n"),
        format!("{HEAD}{}[[evacuations]]\nfrom = \"a\"\nto = \"b\"\n[vms.workload]\nzero = \"1%\"\n", vm("v")),
        // Refused documents: the error is the whole parse's.
        format!("{HEAD}{}{}", vm("v"), vm("v")),
        format!("{HEAD}{}[vms.workload]\nzero = \"1%\"\n[vms.workload]\nzero = \"2%\"\n", vm("v")),
        // A meaning error in the first entry, a key error in the second: the
        // whole parse reports the key error first, and so does the loader.
        format!("{HEAD}{}{}", vm("v").replace("site = \"a\"", "site = \"nowhere\""), vm("w").replace("memory", "memroy")),
        format!("{HEAD}{}x = [\n", vm("v")),
    ];
    for text in &left_to_the_whole_parse {
        assert!(!agree(text, None), "{text}");
    }
    let e = parse(&left_to_the_whole_parse[6], "cut.toml").unwrap_err().to_string();
    assert!(e.contains("memroy") && e.starts_with("cut.toml:"), "{e}");
}
