//! Headless Chromium for tests that must see a page rendered: find the
//! browser, take a screenshot. Tests skip (with a message naming what is
//! missing) only when no Chromium is installed (Debian: `chromium`).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Longest a screenshot may take before the browser is stopped.
const TIMEOUT: Duration = Duration::from_secs(90);

/// The Chromium binary on PATH, or `None` after printing why the caller skips.
pub fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for name in ["chromium", "chromium-browser", "google-chrome"] {
        for dir in std::env::split_paths(&path) {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    eprintln!("skipping: Chromium is not installed (apt-get install chromium; scripts/test.sh does it)");
    None
}

/// Renders `page` (a local HTML file) at `width`×`height` CSS pixels into `png`.
pub fn screenshot(page: &Path, png: &Path, width: u32, height: u32) -> std::io::Result<()> {
    let browser = chromium().ok_or_else(|| std::io::Error::new(std::io::ErrorKind::NotFound, "chromium not found"))?;
    let page = std::fs::canonicalize(page)?;
    let profile = std::env::temp_dir().join(format!(
        "memfabric-chromium-{}-{}",
        std::process::id(),
        xxhash_rust::xxh3::xxh3_64(png.display().to_string().as_bytes())
    ));
    let _ = std::fs::remove_dir_all(&profile);
    std::fs::create_dir_all(&profile)?;
    let _ = std::fs::remove_file(png);
    let mut child = std::process::Command::new(browser)
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
        .arg(format!("file://{}", page.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(&profile);
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "chromium did not finish the screenshot"));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let _ = std::fs::remove_dir_all(&profile);
    if !status.success() || !png.is_file() {
        let mut err = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = std::io::Read::read_to_string(&mut e, &mut err);
        }
        return Err(std::io::Error::other(format!("chromium failed ({status}): {err}")));
    }
    Ok(())
}
