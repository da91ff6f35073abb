use super::*;

fn scratch(name: &str) -> PathBuf {
    memfabric_testkit::scratch::scratch("atomic", name)
}

use memfabric_testkit::scratch::listing;

#[derive(Debug)]
enum TestError {
    Out(OutDirError),
    Boom,
}

impl From<OutDirError> for TestError {
    fn from(e: OutDirError) -> Self {
        TestError::Out(e)
    }
}

/// Writes a run-like result: a manifest listing `a` and `a` itself.
fn fill_sim(value: &'static str) -> impl FnOnce(&Path) -> Result<(), TestError> {
    move |s: &Path| {
        std::fs::write(s.join("a"), value).unwrap();
        std::fs::write(s.join(MANIFEST), r#"{"tool": "memfabric-sim", "files": ["a", "manifest.json"]}"#).unwrap();
        Ok(())
    }
}

fn write_sim(dir: &Path, value: &'static str) -> Result<(), TestError> {
    replace_dir(dir, DirKind::SimResult, false, fill_sim(value))
}

#[test]
fn replaces_a_previous_result_only_with_a_complete_one() {
    let base = scratch("replace");
    let dir = base.join("out");
    write_sim(&dir, "1").unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
    // A failing fill leaves the old content and no staging folder.
    let err = replace_dir(&dir, DirKind::SimResult, false, |_| Err(TestError::Boom)).unwrap_err();
    assert!(matches!(err, TestError::Boom));
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "1");
    assert_eq!(listing(&base), ["out", "out/a", "out/manifest.json"]);
    // A successful fill replaces it whole.
    write_sim(&dir, "2").unwrap();
    assert_eq!(std::fs::read_to_string(dir.join("a")).unwrap(), "2");
    assert_eq!(listing(&base), ["out", "out/a", "out/manifest.json"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn refuses_a_user_folder_and_keeps_its_files() {
    let base = scratch("foreign");
    let dir = base.join("d");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("thesis.txt"), "x").unwrap();
    for force in [false, true] {
        let err = replace_dir(&dir, DirKind::SimResult, force, fill_sim("1")).unwrap_err();
        assert!(matches!(err, TestError::Out(OutDirError::Foreign { .. })), "{err:?}");
    }
    assert_eq!(listing(&base), ["d", "d/thesis.txt"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn never_replaces_a_file_a_device_or_a_symlink() {
    let base = scratch("file");
    let file = base.join("f");
    std::fs::write(&file, "keep").unwrap();
    let link = base.join("l");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    for force in [false, true] {
        let e = replace_dir(&file, DirKind::SimResult, force, fill_sim("1")).unwrap_err();
        assert!(matches!(e, TestError::Out(OutDirError::NotAFolder { what: "a file", .. })), "{e:?}");
        let e = replace_dir(&link, DirKind::SimResult, force, fill_sim("1")).unwrap_err();
        assert!(matches!(e, TestError::Out(OutDirError::Symlink { .. })), "{e:?}");
        let e = check_target(Path::new("/dev/null"), DirKind::SimResult, force).unwrap_err();
        assert!(matches!(e, OutDirError::NotAFolder { what: "a device", .. }), "{e:?}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
    assert_eq!(listing(&base), ["f", "l"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn refuses_another_kind_unless_forced() {
    let base = scratch("kind");
    let dir = base.join("t");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join(MANIFEST), r#"{"format": "memfabric-trace"}"#).unwrap();
    let e = write_sim(&dir, "1").unwrap_err();
    assert!(
        matches!(e, TestError::Out(OutDirError::OtherKind { found: "a memfabric trace", expected: "a memfabric run result", .. })),
        "{e:?}"
    );
    assert_eq!(listing(&base), ["t", "t/manifest.json"]);
    replace_dir(&dir, DirKind::SimResult, true, fill_sim("1")).unwrap();
    assert_eq!(listing(&base), ["t", "t/a", "t/manifest.json"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn refuses_a_result_holding_extra_files_unless_forced() {
    let base = scratch("extra");
    let dir = base.join("r");
    write_sim(&dir, "1").unwrap();
    std::fs::create_dir(dir.join("notes")).unwrap();
    std::fs::write(dir.join("notes/n.txt"), "mine").unwrap();
    let e = write_sim(&dir, "2").unwrap_err();
    match e {
        TestError::Out(OutDirError::ExtraFile { entry, .. }) => assert_eq!(entry, "notes"),
        other => panic!("{other:?}"),
    }
    assert_eq!(std::fs::read_to_string(dir.join("notes/n.txt")).unwrap(), "mine");
    replace_dir(&dir, DirKind::SimResult, true, fill_sim("2")).unwrap();
    assert_eq!(listing(&base), ["r", "r/a", "r/manifest.json"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn fills_an_empty_folder_and_creates_missing_parents() {
    let base = scratch("empty");
    std::fs::create_dir(base.join("e")).unwrap();
    write_sim(&base.join("e"), "1").unwrap();
    write_sim(&base.join("x/y/z"), "1").unwrap();
    assert_eq!(listing(&base), ["e", "e/a", "e/manifest.json", "x", "x/y", "x/y/z", "x/y/z/a", "x/y/z/manifest.json"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_failure_removes_the_parents_it_created() {
    let base = scratch("parents");
    let err = replace_dir(&base.join("p/q/out"), DirKind::SimResult, false, |_| Err(TestError::Boom)).unwrap_err();
    assert!(matches!(err, TestError::Boom));
    assert!(listing(&base).is_empty(), "{:?}", listing(&base));
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn refuses_paths_without_a_folder_name() {
    for p in [".", "..", "/", "d/sub/..", "d/."] {
        let e = check_target(Path::new(p), DirKind::SimResult, true).unwrap_err();
        assert!(matches!(e, OutDirError::NoName { .. }), "{p}: {e:?}");
        assert!(e.is_refusal());
    }
}

#[test]
fn a_single_file_replaces_only_an_earlier_output() {
    let base = scratch("file-out");
    let (ours, theirs) = (base.join("p.toml"), base.join("thesis.txt"));
    replace_file(&ours, "# marker", "a test output", b"# marker\nv = 1\n").unwrap();
    replace_file(&ours, "# marker", "a test output", b"# marker\nv = 2\n").unwrap();
    assert_eq!(std::fs::read_to_string(&ours).unwrap(), "# marker\nv = 2\n");
    std::fs::write(&theirs, "mine").unwrap();
    let e = replace_file(&theirs, "# marker", "a test output", b"# marker\n").unwrap_err();
    assert!(matches!(e, OutDirError::NotOurFile { .. }) && e.is_refusal(), "{e:?}");
    assert_eq!(std::fs::read_to_string(&theirs).unwrap(), "mine");
    std::fs::create_dir(base.join("d")).unwrap();
    assert!(matches!(replace_file(&base.join("d"), "#", "x", b"#").unwrap_err(), OutDirError::NotOurFile { .. }));
    assert!(matches!(replace_file(Path::new("/dev/null"), "#", "x", b"#").unwrap_err(), OutDirError::NotOurFile { .. }));
    assert_eq!(listing(&base), ["d", "p.toml", "thesis.txt"]);
    std::fs::remove_dir_all(&base).unwrap();
}

#[test]
fn a_study_folder_is_its_own_kind_and_its_listed_tables_are_its_own() {
    let base = scratch("study");
    let dir = base.join("s");
    let fill_study = |s: &Path| -> Result<(), TestError> {
        std::fs::create_dir_all(s.join("tables/h1")).unwrap();
        std::fs::write(s.join("tables/h1/migrations.parquet"), "t").unwrap();
        std::fs::write(
            s.join(MANIFEST),
            r#"{"tool": "memfabric-sim", "study": "x", "files": ["manifest.json", "tables/h1/"]}"#,
        )
        .unwrap();
        Ok(())
    };
    replace_dir(&dir, DirKind::Study, false, fill_study).unwrap();
    let e = write_sim(&dir, "1").unwrap_err();
    assert!(matches!(e, TestError::Out(OutDirError::OtherKind { found: "a memfabric study result", .. })), "{e:?}");
    // The listed tables/h1/ covers its files; a second run replaces the folder.
    replace_dir(&dir, DirKind::Study, false, fill_study).unwrap();
    assert_eq!(listing(&base), ["s", "s/manifest.json", "s/tables", "s/tables/h1", "s/tables/h1/migrations.parquet"]);
    std::fs::remove_dir_all(&base).unwrap();
}
