//! One-shot `cutout process` through the real binary: sources anywhere are
//! only read, results mirrored under `--out`, a second run skips what is
//! done, `-o FILE` and `-o -` for one picture, overlapping folders refused,
//! and a bad file among good ones gives the reject summary and exit 1.

mod support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use support::*;

/// Every file under `dir` with its bytes and modification time.
fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, SystemTime)> {
    list_files(dir)
        .into_iter()
        .map(|rel| {
            let p = dir.join(&rel);
            let bytes = std::fs::read(&p).expect("read source");
            let mtime = std::fs::metadata(&p)
                .and_then(|m| m.modified())
                .expect("mtime");
            (rel, (bytes, mtime))
        })
        .collect()
}

/// A folder of pictures outside every inbox.
fn photos(site: &Site) -> PathBuf {
    let dir = site.root().join("photos");
    std::fs::create_dir_all(dir.join("sub")).expect("mkdir photos");
    std::fs::write(dir.join("a.jpg"), jpeg(160, 120, 1)).expect("write a");
    std::fs::write(dir.join("sub/b.png"), png(120, 160, 2)).expect("write b");
    dir
}

fn text(o: &std::process::Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn events(audit: &Path, event: &str) -> Vec<serde_json::Value> {
    read_jsonl(audit)
        .into_iter()
        .filter(|r| r["event"] == event)
        .collect()
}

#[test]
fn folder_to_out_mirrors_leaves_sources_untouched_and_skips_on_a_second_run() {
    let site = Site::new("");
    let src = photos(&site);
    let before = snapshot(&src);
    let out = site.root().join("cut");
    let o = site.process(&["photos", "--out", "cut"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(snapshot(&src), before, "sources changed");
    assert_cutout(&out.join("a.png"));
    assert_cutout(&out.join("sub/b.png"));
    let audit = out.join(".cutout/audit.jsonl");
    let done = events(&audit, "succeeded");
    assert_eq!(done.len(), 2, "{done:?}");
    assert!(done.iter().all(|r| r["moved_to"].is_null()), "{done:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("2 succeeded"));
    // Nothing went into the configured inbox's folders.
    assert!(list_files(&site.outbox()).is_empty());

    let again = site.process(&["photos", "--out", "cut"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    let summary = String::from_utf8_lossy(&again.stdout);
    assert!(summary.contains("0 succeeded"), "{summary}");
    assert!(summary.contains("2 skipped"), "{summary}");
    assert_eq!(
        events(&audit, "succeeded").len(),
        2,
        "second run redid work"
    );
    assert_eq!(snapshot(&src), before, "sources changed on the second run");
    assert_eq!(
        list_files(&out)
            .into_iter()
            .filter(|f| !f.starts_with(".cutout"))
            .collect::<Vec<_>>(),
        vec!["a.png".to_string(), "sub/b.png".to_string()]
    );
}

#[test]
fn one_picture_to_a_file() {
    let site = Site::new("");
    let src = photos(&site);
    let before = snapshot(&src);
    let o = site.process(&["photos/a.jpg", "-o", "a-cut.png"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_cutout(&site.root().join("a-cut.png"));
    assert_eq!(snapshot(&src), before, "sources changed");
}

#[test]
fn dash_o_dash_writes_the_png_and_nothing_else_to_stdout() {
    let site = Site::new("");
    let src = photos(&site);
    let before = snapshot(&src);
    let o = site.process(&["photos/a.jpg", "-o", "-"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bytes = &o.stdout;
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "stdout is not a PNG: {:?}",
        &bytes[..bytes.len().min(16)]
    );
    // The stream ends with the IEND chunk: nothing follows the picture.
    assert!(
        bytes.ends_with(&[0, 0, 0, 0, b'I', b'E', b'N', b'D', 0xAE, 0x42, 0x60, 0x82]),
        "trailing bytes after the PNG"
    );
    let img = image::load_from_memory(bytes).expect("stdout decodes as a picture");
    assert_eq!((img.width(), img.height()), (160, 120));
    let path = site.root().join("from-stdout.png");
    std::fs::write(&path, bytes).expect("write");
    assert_cutout(&path);
    assert_eq!(snapshot(&src), before, "sources changed");
}

#[test]
fn out_inside_a_source_and_a_source_inside_out_are_refused() {
    let site = Site::new("");
    let src = photos(&site);
    let before = snapshot(&src);
    let o = site.process(&["photos", "--out", "photos/cut"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--out photos/cut is inside the source photos"),
        "{err}"
    );
    assert!(
        !src.join("cut").exists(),
        "created a folder inside the source"
    );
    assert_eq!(snapshot(&src), before);

    let o = site.process(&["photos/sub", "--out", "photos"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("the source photos/sub is inside --out photos"),
        "{err}"
    );
    assert_eq!(snapshot(&src), before);
}

#[test]
fn a_bad_file_among_good_ones_is_rejected_and_left_in_place() {
    let site = Site::new("");
    let src = photos(&site);
    std::fs::write(src.join("broken.jpg"), b"garbage").expect("write bad");
    let before = snapshot(&src);
    let o = site.process(&["photos", "--out", "cut"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let summary = String::from_utf8_lossy(&o.stdout);
    assert!(
        summary.contains("2 succeeded, 0 duplicates, 1 rejected, 0 failed"),
        "{summary}"
    );
    assert_eq!(snapshot(&src), before, "sources changed");
    let audit = site.root().join("cut/.cutout/audit.jsonl");
    let rejected = events(&audit, "rejected");
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["input"], "broken.jpg");
    assert!(rejected[0]["moved_to"].is_null(), "{rejected:?}");
    assert!(!site.root().join("cut/broken.png").exists());
}

#[test]
fn unknown_provider_is_a_config_error_naming_it() {
    let site = Site::new("");
    photos(&site);
    let o = site.process(&["photos", "--out", "cut", "--provider", "nope"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("--provider nope"));
}

#[test]
fn preset_and_format_finish_every_picture() {
    let site = Site::new("");
    let src = photos(&site);
    let before = snapshot(&src);
    let o = site.process(&["photos", "--out", "amazon", "--preset", "amazon"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    for rel in ["a.jpg", "sub/b.jpg"] {
        let img = image::open(site.root().join("amazon").join(rel))
            .unwrap_or_else(|e| panic!("{rel}: {e}"))
            .into_rgb8();
        assert_eq!(img.dimensions(), (2000, 2000), "{rel}");
        assert_eq!(img.get_pixel(3, 3).0, [255, 255, 255], "{rel}: white");
    }
    // --format overrides the preset's; the thumbnail stays transparent
    let o = site.process(&[
        "photos",
        "--out",
        "thumbs",
        "--preset",
        "thumbnail",
        "--format",
        "png",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let t = image::open(site.root().join("thumbs/a.png"))
        .expect("thumbnail")
        .into_rgba8();
    assert_eq!(t.dimensions(), (400, 400));
    assert_eq!(t.get_pixel(1, 1)[3], 0);
    // --format alone: webp cut-outs; jpeg ones on white (no transparency)
    let o = site.process(&["photos", "--out", "webp", "--format", "webp"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_cutout(&site.root().join("webp/a.webp"));
    let o = site.process(&["photos/a.jpg", "-o", "a-white.jpg"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let bytes = std::fs::read(site.root().join("a-white.jpg")).expect("jpeg");
    assert!(bytes.starts_with(&[0xFF, 0xD8]), "-o *.jpg writes a JPEG");
    let w = image::load_from_memory(&bytes).expect("jpeg").into_rgb8();
    assert_eq!((w.width(), w.height()), (160, 120));
    assert_eq!(w.get_pixel(1, 1).0, [255, 255, 255]);
    assert_eq!(snapshot(&src), before, "sources changed");
}

#[test]
fn bad_preset_format_or_file_name_are_refused_naming_the_flag() {
    let site = Site::new("");
    photos(&site);
    let cases: [(&[&str], &str); 5] = [
        (&["photos", "--out", "x", "--preset", "etsy"], "--preset"),
        (&["photos", "--out", "x", "--format", "gif"], "--format"),
        (
            &["photos/a.jpg", "-o", "a.png", "--preset", "amazon"],
            "-o a.png",
        ),
        (&["--preset", "amazon"], "--preset"),
        (
            &["photos/a.jpg", "-o", "a.webp", "--format", "jpeg"],
            "*.jpg",
        ),
    ];
    for (args, needle) in cases {
        let o = site.process(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!site.root().join("x").exists(), "nothing written");
}

#[test]
fn dry_run_prints_the_plan_on_stdout() {
    let site = Site::new("");
    let src = photos(&site);
    let o = site.process(&[
        "photos",
        "--out",
        "cut",
        "--preset",
        "thumbnail",
        "--dry-run",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    let cut = site.root().join("cut");
    for (input, output) in [("a.jpg", "a.webp"), ("sub/b.png", "sub/b.webp")] {
        let line = format!(
            "{} -> {}",
            src.canonicalize().expect("src").join(input).display(),
            cut.join(output).display()
        );
        assert!(out.lines().any(|l| l == line), "{line:?} in\n{}", text(&o));
    }
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!err.contains(" -> "), "the plan is not a diagnostic: {err}");
    assert!(!cut.exists(), "a dry run writes nothing");
}
