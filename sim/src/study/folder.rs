//! A study's output folder: `points.parquet`, `points.jsonl` (the records,
//! read by `merge` and `--resume`), `manifest.json`, the study and base
//! scenario texts, `plots/*.svg`, optional `tables/<point hash>/` and, for a
//! plan, `plan.json`; `report.html` is added by the report module.
//!
//! The folder is written whole to a staging sibling and swapped in
//! ([`crate::atomic_dir::replace_dir`]); `merge` writes the union of shard
//! folders the same way, and the table bytes depend only on the records.

use super::points::Shard;
use super::table::{self, PointRecord};
use super::{Study, StudyKind};
use crate::output::OutputError;
use std::path::Path;

/// `manifest.json` of a study folder.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StudyManifest {
    /// Always `"memfabric-sim"`.
    pub tool: String,
    /// Simulator version.
    pub version: String,
    /// Sweep or plan.
    pub kind: StudyKind,
    /// Study name.
    pub study: String,
    /// xxh3-128 of the study text and the base scenario text.
    pub study_hash: String,
    /// Base scenario name.
    pub scenario: String,
    /// Seeds each point runs with.
    pub seeds: Vec<u64>,
    /// Column paths of the points table, in order.
    pub columns: Vec<String>,
    /// Points of the whole study.
    pub points_total: u64,
    /// Which shard this folder holds (absent: all points).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Points in this folder.
    pub points: u64,
    /// Points that failed (their `error` column says why).
    pub failed_points: u64,
    /// Files written, relative to the folder.
    pub files: Vec<String>,
}

/// Key-value metadata of `points.parquet` (the same for every shard).
pub fn provenance(m: &StudyManifest) -> Vec<(String, String)> {
    vec![
        ("memfabric.tool".into(), m.tool.clone()),
        ("memfabric.version".into(), m.version.clone()),
        ("memfabric.study".into(), m.study.clone()),
        ("memfabric.study_hash".into(), m.study_hash.clone()),
        ("memfabric.kind".into(), format!("{:?}", m.kind).to_lowercase()),
    ]
}

/// What a study folder holds besides the records.
pub struct Contents<'a> {
    /// The manifest (its `files` is filled in here).
    pub manifest: StudyManifest,
    /// Records, sorted by point number.
    pub records: &'a [PointRecord],
    /// Study file text (absent in a merge without it).
    pub study_text: Option<&'a str>,
    /// Base scenario text.
    pub scenario_text: Option<&'a str>,
    /// `plan.json` text.
    pub plan_json: Option<String>,
    /// Where the per-point tables come from.
    pub tables_from: TablesFrom<'a>,
    /// Draw plots.
    pub plots: bool,
}

/// Where a study folder's per-point tables (`tables/<point hash>/`) come from.
#[derive(Debug, Clone, Copy)]
pub enum TablesFrom<'a> {
    /// No per-point tables.
    Nothing,
    /// A journal's `tables/` folder, moved in: it is the run's own staging.
    Journal(&'a Path),
    /// The `tables/` folders of shard results, copied: a merge leaves the
    /// folders it reads as they were.
    Shards(&'a [&'a Path]),
}

/// A manifest for `study`'s folder.
pub fn manifest(study: &Study, kind: StudyKind, columns: Vec<String>, total: u64, shard: Option<Shard>, records: &[PointRecord]) -> StudyManifest {
    let scenario_name = study
        .scenario_doc
        .get("scenario")
        .and_then(|s| s.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("")
        .to_string();
    StudyManifest {
        tool: "memfabric-sim".into(),
        version: crate::VERSION.into(),
        kind,
        study: study.name.clone(),
        study_hash: study.hash.clone(),
        scenario: scenario_name,
        seeds: study.seeds.clone(),
        columns,
        points_total: total,
        shard,
        points: records.len() as u64,
        failed_points: records.iter().filter(|r| r.error.is_some()).count() as u64,
        files: Vec::new(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OutputError + '_ {
    move |source| OutputError::Io { path: path.display().to_string(), source }
}

/// Writes a study folder atomically.
pub fn write(dir: &Path, c: Contents<'_>) -> Result<(), OutputError> {
    crate::atomic_dir::replace_dir(dir, crate::atomic_dir::DirKind::Study, false, |staging| fill(staging, c))
}

fn fill(dir: &Path, mut c: Contents<'_>) -> Result<(), OutputError> {
    let mut files = vec!["points.parquet".to_string(), "points.jsonl".to_string(), "manifest.json".to_string()];
    table::write_points(dir, &c.manifest.columns, c.records, &provenance(&c.manifest))?;
    let jsonl = dir.join("points.jsonl");
    std::fs::write(&jsonl, table::records_jsonl(c.records)).map_err(io(&jsonl))?;
    for (name, text) in [("study.toml", c.study_text), ("scenario.toml", c.scenario_text)] {
        if let Some(text) = text {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(io(&p))?;
            files.push(name.into());
        }
    }
    if let Some(plan) = &c.plan_json {
        let p = dir.join("plan.json");
        std::fs::write(&p, plan).map_err(io(&p))?;
        files.push("plan.json".into());
    }
    if c.plots {
        let plot_dir = dir.join("plots");
        for (name, svg) in super::plots::draw(&c.manifest.columns, c.records) {
            std::fs::create_dir_all(&plot_dir).map_err(io(&plot_dir))?;
            let p = plot_dir.join(format!("{name}.svg"));
            std::fs::write(&p, svg).map_err(io(&p))?;
            files.push(format!("plots/{name}.svg"));
        }
    }
    let to = dir.join("tables");
    match c.tables_from {
        TablesFrom::Nothing => {}
        TablesFrom::Journal(from) => {
            for r in c.records {
                let src = from.join(&r.hash);
                if src.is_dir() {
                    std::fs::create_dir_all(&to).map_err(io(&to))?;
                    std::fs::rename(&src, to.join(&r.hash)).map_err(io(&src))?;
                    files.push(format!("tables/{}/", r.hash));
                }
            }
        }
        TablesFrom::Shards(shards) => {
            for r in c.records {
                if let Some(src) = shards.iter().map(|d| d.join("tables").join(&r.hash)).find(|p| p.is_dir()) {
                    std::fs::create_dir_all(&to).map_err(io(&to))?;
                    copy_tree(&src, &to.join(&r.hash))?;
                    files.push(format!("tables/{}/", r.hash));
                }
            }
        }
    }
    files.push("report.html".into());
    c.manifest.files = files;
    let path = dir.join("manifest.json");
    let mut text = serde_json::to_string_pretty(&c.manifest).expect("manifest serializes");
    text.push('\n');
    std::fs::write(&path, text).map_err(io(&path))?;
    crate::report::write_report(dir).map_err(|e| OutputError::Plot { path: dir.join("report.html").display().to_string(), message: e.to_string() })?;
    Ok(())
}

/// Copies a folder of regular files and folders (a point's tables); a
/// symbolic link or a special file is refused, not followed.
fn copy_tree(from: &Path, to: &Path) -> Result<(), OutputError> {
    std::fs::create_dir(to).map_err(io(to))?;
    let mut entries: Vec<_> = std::fs::read_dir(from).map_err(io(from))?.collect::<Result<_, _>>().map_err(io(from))?;
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = std::fs::symlink_metadata(&src).map_err(io(&src))?.file_type();
        if kind.is_dir() {
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        } else {
            let source = std::io::Error::new(std::io::ErrorKind::InvalidData, "not a regular file or folder; not copied");
            return Err(OutputError::Io { path: src.display().to_string(), source });
        }
    }
    Ok(())
}

/// Reads a study folder's manifest and records.
pub fn read(dir: &Path) -> Result<(StudyManifest, Vec<PointRecord>), String> {
    let mpath = dir.join("manifest.json");
    let text = std::fs::read_to_string(&mpath).map_err(|e| format!("{}: cannot read: {e}", mpath.display()))?;
    let manifest: StudyManifest =
        serde_json::from_str(&text).map_err(|e| format!("{}: not a study manifest: {e}", mpath.display()))?;
    let rpath = dir.join("points.jsonl");
    let text = std::fs::read_to_string(&rpath).map_err(|e| format!("{}: cannot read: {e}", rpath.display()))?;
    let records = table::read_jsonl(&text).map_err(|e| format!("{}: {e}", rpath.display()))?;
    Ok((manifest, records))
}

/// Combines shard folders into one: checks they come from the same study,
/// that no point appears twice and that together they hold every point.
pub fn merge(dirs: &[&Path], out: &Path, plots: bool) -> Result<StudyManifest, String> {
    let mut first: Option<(StudyManifest, Option<String>, Option<String>)> = None;
    let mut records: Vec<PointRecord> = Vec::new();
    for dir in dirs {
        let (m, rs) = read(dir)?;
        if let Some((f, _, _)) = &first {
            if f.study_hash != m.study_hash || f.columns != m.columns || f.kind != m.kind {
                return Err(format!(
                    "{}: comes from another study (study hash {} ≠ {} of {})",
                    dir.display(),
                    m.study_hash,
                    f.study_hash,
                    dirs[0].display()
                ));
            }
        } else {
            let read = |n: &str| std::fs::read_to_string(dir.join(n)).ok();
            first = Some((m.clone(), read("study.toml"), read("scenario.toml")));
        }
        records.extend(rs);
    }
    let Some((mut manifest, study_text, scenario_text)) = first else { return Err("no folders to merge".into()) };
    records.sort_by_key(|r| r.index);
    if let Some(w) = records.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(format!("point {} appears in more than one folder", w[0].index));
    }
    if manifest.kind == StudyKind::Sweep && records.len() as u64 != manifest.points_total {
        return Err(format!(
            "the folders hold {} of the study's {} points: a shard is missing",
            records.len(),
            manifest.points_total
        ));
    }
    manifest.shard = None;
    manifest.points = records.len() as u64;
    manifest.failed_points = records.iter().filter(|r| r.error.is_some()).count() as u64;
    let contents = Contents {
        manifest: manifest.clone(),
        records: &records,
        study_text: study_text.as_deref(),
        scenario_text: scenario_text.as_deref(),
        plan_json: None,
        tables_from: TablesFrom::Shards(dirs),
        plots,
    };
    write(out, contents).map_err(|e| format!("writing {}: {e}", out.display()))?;
    Ok(manifest)
}
