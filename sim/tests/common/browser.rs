//! Headless Chromium for tests that look at rendered output (SVG plots, HTML
//! reports): find the browser, take a screenshot of a local page.
//!
//! Debian's `chromium` package provides it; scripts/test.sh installs it when
//! missing. Each screenshot runs a fresh browser with a throw-away profile
//! and everything that would reach the network switched off, under a time
//! limit.

use super::process::run_with_timeout;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Longest a screenshot may take.
const SCREENSHOT_TIMEOUT: Duration = Duration::from_secs(90);

/// The Chromium binary (`MEMFABRIC_CHROMIUM`, else `chromium` or
/// `chromium-browser` on PATH), or None after printing a skip message that
/// names what is missing.
pub fn chromium() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("MEMFABRIC_CHROMIUM") {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let candidate = dir.join(name);
            if candidate.is_file() {
                return Some(candidate);
            }
        }
    }
    eprintln!("skipped: no chromium on PATH (Debian: apt-get install chromium; scripts/test.sh does it)");
    None
}

/// Renders `page` (a local file) in a `width`×`height` window and writes a
/// PNG screenshot to `png`.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> std::io::Result<()> {
    let browser = chromium().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "chromium not found"))?;
    let page = std::fs::canonicalize(page)?;
    let profile = std::env::temp_dir().join(format!(
        "memfabric-chromium-{}-{}",
        std::process::id(),
        png.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()
    ));
    let _ = std::fs::remove_file(png);
    let (ok, log) = run_with_timeout(
        Command::new(&browser)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
                "--hide-scrollbars",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(format!("--screenshot={}", png.display()))
            .arg(format!("file://{}", page.display())),
        SCREENSHOT_TIMEOUT,
    );
    let _ = std::fs::remove_dir_all(&profile);
    if !ok || !png.exists() {
        return Err(std::io::Error::other(format!("{} did not write {}:\n{log}", browser.display(), png.display())));
    }
    Ok(())
}
