//! The SVG plots render in a browser: headless Chromium screenshots the
//! quickstart's timeline and link plot, and the screenshots show the figure
//! (mostly white paper, with the timeline's blue pre-copy and red pause
//! colours, and the link plot's throughput line), not an empty page or an
//! error page.

mod common;

use common::browser::{chromium, screenshot};
use common::scenario_path;
use memfabric_sim::{output, run, scenario};

/// Counts pixels of an RGBA image close to `rgb`.
fn count_near(pixels: &[u8], rgb: (u8, u8, u8), tolerance: u8) -> usize {
    pixels
        .chunks_exact(4)
        .filter(|p| p[0].abs_diff(rgb.0) <= tolerance && p[1].abs_diff(rgb.1) <= tolerance && p[2].abs_diff(rgb.2) <= tolerance)
        .count()
}

fn decode(png: &std::path::Path) -> (u32, u32, Vec<u8>) {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(png).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    buf.truncate(info.buffer_size());
    let rgba = match info.color_type {
        png::ColorType::Rgba => buf,
        png::ColorType::Rgb => buf.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
        other => panic!("{}: unexpected colour type {other:?}", png.display()),
    };
    (info.width, info.height, rgba)
}

#[test]
fn svg_plots_render_in_chromium() {
    if chromium().is_none() {
        return;
    }
    let sc = scenario::load(&scenario_path("quickstart")).unwrap();
    let outs = run::run_all(&sc, None);
    let dir = std::env::temp_dir().join(format!("memfabric-svg-render-{}", std::process::id()));
    output::write_results(&outs, &dir, true, false).unwrap();
    // (stem, colour that must cover a visible area, its name)
    for (stem, colour, what) in [
        ("timeline", (25, 90, 200), "dark-blue pre-copy rounds"),
        ("timeline", (215, 40, 40), "red pauses and downtime bars"),
        ("link_throughput", (225, 225, 225), "grey capacity area"),
    ] {
        let svg = dir.join("plots").join(format!("{stem}.svg"));
        let png = dir.join(format!("{stem}-chromium.png"));
        screenshot(&svg, &png, 1280, 720).unwrap_or_else(|e| panic!("{e}"));
        let (w, h, pixels) = decode(&png);
        assert_eq!((w, h), (1280, 720), "{stem}: window size");
        let total = (w * h) as usize;
        let white = count_near(&pixels, (255, 255, 255), 3);
        assert!(white > total / 3 && white < total * 99 / 100, "{stem}: {white} of {total} pixels white");
        let hits = count_near(&pixels, colour, 12);
        assert!(hits > 2_000, "{stem}: only {hits} pixels of the {what} {colour:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
