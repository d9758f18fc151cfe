//! The drop-folder daemon end to end on the built-in engine: the real
//! binary on temp folders, checked the way a user would look at the result
//! (files in outbox/archive/rejected/failed, reason files, audit lines).

mod support;

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

fn code_of(site: &Site, rel: &str) -> String {
    let p = site.rejected().join(format!("{rel}.reason.json"));
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let v: serde_json::Value = serde_json::from_str(&text).expect("reason.json is JSON");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.len() > 10),
        "reason in words: {v}"
    );
    v["code"].as_str().expect("code").to_string()
}

/// Every input ends in exactly one place, with one outcome line each.
fn assert_each_input_in_one_place(site: &Site, inputs: &[String]) {
    let inbox_left = site.files(&site.inbox());
    assert!(
        inbox_left.is_empty(),
        "inbox should be empty, has {inbox_left:?}"
    );
    let archive = site.files(&site.archive());
    let rejected: Vec<String> = site
        .files(&site.rejected())
        .into_iter()
        .filter(|f| !f.ends_with(".reason.json"))
        .collect();
    let failed: Vec<String> = site
        .files(&site.failed())
        .into_iter()
        .filter(|f| !f.ends_with(".reason.json"))
        .collect();
    for inp in inputs {
        let places = [&archive, &rejected, &failed]
            .iter()
            .filter(|l| l.contains(inp))
            .count();
        assert_eq!(
            places, 1,
            "{inp} must be in exactly one of archive/rejected/failed"
        );
    }
    assert_eq!(archive.len() + rejected.len() + failed.len(), inputs.len());
    let audit = site.audit();
    for inp in inputs {
        let outcomes = audit
            .iter()
            .filter(|r| r["input"] == inp.as_str() && r["event"] != "retry")
            .count();
        assert_eq!(
            outcomes, 1,
            "{inp}: exactly one outcome line in the audit log"
        );
    }
}

#[test]
fn batch_turns_packshots_and_real_photos_into_cutouts() {
    let site = Site::new("");
    site.drop_file("shoe.jpg", &jpeg(320, 240, 1));
    site.drop_file("bag.png", &png(300, 300, 2));
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples");
    for name in ["coffee.png", "chelsea.png", "astronaut.png"] {
        std::fs::copy(samples.join(name), site.inbox().join(name)).expect("copy sample");
    }
    let out = site.process(&[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "exit {:?}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("5 succeeded"), "{stdout}");
    for name in [
        "shoe.png",
        "bag.png",
        "coffee.png",
        "chelsea.png",
        "astronaut.png",
    ] {
        let img = assert_cutout(&site.outbox().join(name));
        // real, soft alpha: some edge pixels are partly transparent
        let partial = img.pixels().filter(|p| p[3] > 10 && p[3] < 245).count();
        assert!(
            partial > 20,
            "{name}: expected an anti-aliased edge, got {partial} partial pixels"
        );
    }
    // the shoe keeps its colour (no blending toward black or white)
    let shoe = image::open(site.outbox().join("shoe.png"))
        .expect("open")
        .into_rgba8();
    let c = shoe.get_pixel(160, 120);
    assert!(c[0] > 100 && c[1] < 80, "object colour kept: {c:?}");
    assert_eq!(site.files(&site.archive()).len(), 5);
    let ok = site.audit_events("succeeded");
    assert_eq!(ok.len(), 5);
    for r in &ok {
        for key in [
            "ts",
            "event",
            "inbox",
            "input",
            "sha256",
            "bytes",
            "format",
            "width",
            "height",
            "provider",
            "attempts",
            "duration_ms",
            "output",
        ] {
            assert!(!r[key].is_null(), "audit key {key} missing in {r}");
        }
        assert!(r.get("reason").is_some());
    }
}

#[test]
fn bad_files_are_rejected_with_a_reason_and_a_stable_code() {
    // The empty file is judged at once (no upload is going to write it).
    let site = Site::new("empty_grace = \"0s\"\n");
    let good = jpeg(200, 150, 3);
    let mut bomb = png(40, 30, 4);
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let crc = crc32fast::hash(&bomb[12..29]); // IHDR type + data, with a valid CRC
    bomb[29..33].copy_from_slice(&crc.to_be_bytes());
    site.drop_file("zero.jpg", b"");
    site.drop_file("truncated.jpg", &good[..good.len() / 2]);
    site.drop_file("bomb.png", &bomb);
    site.drop_file("notes.jpg", b"this is a text file with a .jpg name\n");
    site.drop_file("anim.gif", b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x00\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;");
    site.drop_file("fine.jpg", &good);
    let out = site.process(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "rejections make the exit status 1"
    );
    assert_eq!(code_of(&site, "zero.jpg"), "empty-file");
    assert_eq!(code_of(&site, "truncated.jpg"), "truncated-image");
    assert_eq!(code_of(&site, "bomb.png"), "image-too-wide");
    assert_eq!(code_of(&site, "notes.jpg"), "not-an-image");
    assert_eq!(code_of(&site, "anim.gif"), "unsupported-format");
    assert!(site.outbox().join("fine.png").exists());
    let inputs: Vec<String> = [
        "zero.jpg",
        "truncated.jpg",
        "bomb.png",
        "notes.jpg",
        "anim.gif",
        "fine.jpg",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_each_input_in_one_place(&site, &inputs);
    let rejected = site.audit_events("rejected");
    assert_eq!(rejected.len(), 5);
    assert!(rejected
        .iter()
        .all(|r| r["code"].is_string() && r["reason"].is_string()));
}

#[test]
fn names_with_spaces_non_ascii_and_nested_folders_keep_their_paths() {
    let site = Site::new("");
    site.drop_file("Sommer 2026/Schuhe/Größe 42 rot.jpg", &jpeg(200, 160, 5));
    site.drop_file("日本/靴.png", &png(160, 160, 6));
    site.drop_file("a/b/c/d/deep.jpg", &jpeg(120, 100, 7));
    // litter and partial uploads are left alone
    site.drop_file(".DS_Store", b"junk");
    site.drop_file("upload.jpg.part", &jpeg(50, 50, 8));
    site.drop_file("Thumbs.db", b"junk");
    site.drop_file("@eaDir/x.jpg", &jpeg(50, 50, 9));
    let out = site.process(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_cutout(&site.outbox().join("Sommer 2026/Schuhe/Größe 42 rot.png"));
    assert_cutout(&site.outbox().join("日本/靴.png"));
    assert_cutout(&site.outbox().join("a/b/c/d/deep.png"));
    assert!(site
        .archive()
        .join("Sommer 2026/Schuhe/Größe 42 rot.jpg")
        .exists());
    let left = site.files(&site.inbox());
    assert_eq!(
        left,
        vec![".DS_Store", "@eaDir/x.jpg", "Thumbs.db", "upload.jpg.part"]
    );
}

#[test]
fn the_same_picture_twice_is_paid_once_and_audited_as_duplicate() {
    let site = Site::new("");
    let bytes = jpeg(240, 180, 10);
    site.drop_file("first.jpg", &bytes);
    assert!(site.process(&[]).status.success());
    site.drop_file("again/second.jpg", &bytes);
    site.drop_file("first.jpg", &bytes); // same name and content, after the first was archived
    let out = site.process(&[]);
    assert!(out.status.success());
    assert_eq!(site.audit_events("succeeded").len(), 1, "processed once");
    let dups = site.audit_events("duplicate");
    assert_eq!(dups.len(), 2);
    let first_job = site.audit_events("succeeded")[0]["job"].clone();
    assert!(dups.iter().all(|d| d["duplicate_of"] == first_job));
    // each input name gets its cut-out; the re-dropped first.jpg reuses outbox/first.png
    assert!(site.outbox().join("again/second.png").exists());
    assert_eq!(
        site.files(&site.outbox()),
        vec!["again/second.png", "first.png"]
    );
    assert_eq!(
        std::fs::read(site.outbox().join("again/second.png")).expect("read"),
        std::fs::read(site.outbox().join("first.png")).expect("read")
    );
    // both copies of first.jpg are archived, none overwritten
    assert_eq!(
        site.files(&site.archive()),
        vec!["again/second.jpg", "first-2.jpg", "first.jpg"]
    );
}

#[test]
fn two_inputs_never_share_an_output_name() {
    let site = Site::new("");
    site.drop_file("shoe.jpg", &jpeg(200, 150, 11));
    site.drop_file("shoe.png", &png(200, 150, 12));
    assert!(site.process(&[]).status.success());
    assert_eq!(site.files(&site.outbox()), vec!["shoe-2.png", "shoe.png"]);
    let outs: Vec<String> = site
        .audit_events("succeeded")
        .iter()
        .map(|r| r["output"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(outs.len(), 2);
    assert_ne!(outs[0], outs[1]);
}

#[test]
fn webp_output_and_after_success_modes() {
    let site = Site::new(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"200ms\"\noutput_format = \"webp\"\nafter_success = \"delete\"\n\
         [[inbox]]\npath = \"keep-in\"\noutbox = \"keep-out\"\nsettle = \"200ms\"\nafter_success = \"keep\"\n",
    );
    site.drop_file("a.jpg", &jpeg(200, 150, 13));
    std::fs::create_dir_all(site.root().join("keep-in")).expect("mkdir");
    std::fs::write(site.root().join("keep-in/k.png"), png(180, 120, 14)).expect("write");
    assert!(site.process(&[]).status.success());
    let webp = std::fs::read(site.outbox().join("a.webp")).expect("webp output");
    assert_eq!(&webp[8..12], b"WEBP");
    assert_cutout(&site.outbox().join("a.webp"));
    assert!(
        !site.inbox().join("a.jpg").exists(),
        "deleted after success"
    );
    assert!(site.files(&site.archive()).is_empty());
    assert!(
        site.root().join("keep-in/k.png").exists(),
        "kept after success"
    );
    assert_cutout(&site.root().join("keep-out/k.png"));
    // a second run does not redo the kept file
    let out = site.process(&[]);
    assert!(out.status.success());
    assert_eq!(site.audit_events("succeeded").len(), 2);
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 succeeded"));
}

#[test]
fn exif_orientation_and_unusual_pixel_formats() {
    let site = Site::new("");
    // 300x200 stored, EXIF orientation 6 (rotate 90° clockwise) → shown 200x300
    let jpeg_bytes = jpeg(300, 200, 15);
    let mut exif = vec![0xFF, 0xD8, 0xFF, 0xE1];
    let tiff: Vec<u8> = [
        b"Exif\0\0".as_slice(),
        b"MM\0*\0\0\0\x08",
        &[0, 1],
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, 6, 0, 0],
        &[0, 0, 0, 0],
    ]
    .concat();
    exif.extend_from_slice(&((tiff.len() + 2) as u16).to_be_bytes());
    exif.extend_from_slice(&tiff);
    exif.extend_from_slice(&jpeg_bytes[2..]);
    site.drop_file("rotated.jpg", &exif);
    // 16-bit RGB, grey, palette PNGs
    let rgb = packshot(160, 120, 16);
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(160, 120, |x, y| {
        let p = rgb.get_pixel(x, y);
        image::Rgb([p[0] as u16 * 257, p[1] as u16 * 257, p[2] as u16 * 257])
    });
    let mut b16 = Vec::new();
    image::DynamicImage::ImageRgb16(rgb16)
        .write_to(&mut std::io::Cursor::new(&mut b16), image::ImageFormat::Png)
        .expect("png16");
    site.drop_file("sixteen.png", &b16);
    let grey = image::DynamicImage::ImageRgb8(rgb.clone()).into_luma8();
    site.drop_file("grey.png", &encode_luma(&grey));
    site.drop_file("palette.png", &palette_png(&rgb));
    let out = site.process(&[]);
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let r = assert_cutout(&site.outbox().join("rotated.png"));
    assert_eq!(r.dimensions(), (200, 300), "EXIF orientation applied");
    for n in ["sixteen.png", "grey.png", "palette.png"] {
        let img = assert_cutout(&site.outbox().join(n));
        assert_eq!(img.dimensions(), (160, 120));
    }
}

fn encode_luma(img: &image::GrayImage) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("grey png");
    out
}

/// An indexed-colour PNG written by hand (8-bit palette, ≤256 colours).
fn palette_png(rgb: &image::RgbImage) -> Vec<u8> {
    let (w, h) = rgb.dimensions();
    let mut palette: Vec<[u8; 3]> = Vec::new();
    let mut idx = Vec::with_capacity((w * h) as usize);
    for p in rgb.pixels() {
        // quantise to 6 levels per channel (216 colours)
        let q = [p[0] / 43 * 51, p[1] / 43 * 51, p[2] / 43 * 51];
        let i = match palette.iter().position(|c| *c == q) {
            Some(i) => i,
            None => {
                palette.push(q);
                palette.len() - 1
            }
        };
        idx.push(i as u8);
    }
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(palette.concat());
        let mut wr = enc.write_header().expect("header");
        wr.write_image_data(&idx).expect("data");
    }
    out
}

#[test]
fn dry_run_validates_without_touching_anything() {
    let site = Site::new("");
    site.drop_file("ok.jpg", &jpeg(120, 90, 17));
    site.drop_file("bad.jpg", b"nope");
    let out = site.process(&["--dry-run"]);
    assert_eq!(out.status.code(), Some(1));
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        s.contains("1 valid") && s.contains("1 would be rejected"),
        "{s}"
    );
    assert_eq!(site.files(&site.inbox()), vec!["bad.jpg", "ok.jpg"]);
    assert!(site.files(&site.outbox()).is_empty());
    assert!(site.audit().is_empty());
}

#[test]
fn bad_config_names_key_and_file_and_exits_3() {
    let site = Site::new("[limits]\nmax_file_size = \"10 MiBs\"\n");
    let out = site.process(&[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("limits.max_file_size") && err.contains("cutout.toml"),
        "{err}"
    );
    site.write_config("[[inbox]]\npath = \"inbox\"\nsetle = \"2s\"\n");
    let out = site.cmd(&["check"]).output().expect("check");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("setle") && err.contains("cutout.toml"),
        "{err}"
    );
    // a path that exists but is a file, not a folder
    std::fs::write(site.root().join("blocker"), b"x").expect("write");
    site.write_config("[[inbox]]\npath = \"inbox\"\noutbox = \"blocker\"\n");
    let out = site.cmd(&["check"]).output().expect("check");
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("inbox[0].outbox") && err.contains("not a folder"),
        "{err}"
    );
}

#[test]
fn check_and_status_describe_the_setup() {
    let site = Site::new("");
    let out = site.cmd(&["check"]).output().expect("check");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("provider local (local): ok"), "{s}");
    assert!(s.contains("created folder") && s.contains("outbox"), "{s}");
    site.drop_file("x.jpg", &jpeg(100, 80, 18));
    site.drop_file("y.jpg", b"not a picture");
    site.process(&[]);
    site.drop_file("waiting.jpg", &jpeg(100, 80, 19));
    let out = site.cmd(&["status"]).output().expect("status");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(s.contains("succeeded") && s.contains("rejected"), "{s}");
    assert!(
        s.contains("waiting in inbox") && s.contains("1 file"),
        "{s}"
    );
    assert!(s.contains("y.jpg") && s.contains("not-an-image"), "{s}");
}

#[test]
fn daemon_waits_for_a_slowly_written_file() {
    let site = Site::new("[[inbox]]\npath = \"inbox\"\nsettle = \"700ms\"\n");
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    let bytes = jpeg(400, 300, 20);
    let p = site.inbox().join("slow.jpg");
    {
        let mut f = std::fs::File::create(&p).expect("create");
        for chunk in bytes.chunks(bytes.len() / 8 + 1) {
            f.write_all(chunk).expect("write");
            f.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(250));
        }
    }
    wait_until(LONG, "slow.jpg processed", || {
        site.outbox().join("slow.png").exists()
    });
    d.term();
    assert!(d.wait(LONG).success());
    assert!(
        site.files(&site.rejected()).is_empty(),
        "never taken half-written: {}",
        d.log_text()
    );
    assert_eq!(site.audit_events("succeeded").len(), 1);
    assert_cutout(&site.outbox().join("slow.png"));
}

#[test]
fn daemon_takes_500_files_dropped_at_once() {
    let site =
        Site::new("[queue]\nconcurrency = 4\n[[inbox]]\npath = \"inbox\"\nsettle = \"300ms\"\n");
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    let mut inputs = Vec::new();
    for i in 0..500u32 {
        let name = format!("batch/{:03}/p{i}.jpg", i % 7);
        site.drop_file(&name, &jpeg(64, 48, 1000 + i));
        inputs.push(name);
    }
    wait_until(Duration::from_secs(300), "500 cut-outs", || {
        site.audit()
            .iter()
            .filter(|r| r["event"] != "retry")
            .count()
            >= 500
    });
    d.term();
    assert!(d.wait(LONG).success());
    assert_each_input_in_one_place(&site, &inputs);
    // the 7 distinct seeds modulo... every picture differs, so no duplicates
    assert_eq!(site.audit_events("succeeded").len(), 500);
    assert_eq!(site.files(&site.outbox()).len(), 500);
}

#[test]
fn sigterm_mid_batch_then_restart_loses_nothing() {
    let site = Site::new("[queue]\nconcurrency = 2\n");
    let mut inputs = Vec::new();
    for i in 0..60u32 {
        let name = format!("p{i:02}.jpg");
        site.drop_file(&name, &jpeg(640, 480, 2000 + i));
        inputs.push(name);
    }
    site.drop_file("broken.jpg", b"garbage");
    inputs.push("broken.jpg".into());
    let mut d = site.spawn_daemon();
    wait_until(LONG, "some progress", || {
        site.audit_events("succeeded").len() >= 3
    });
    d.term();
    let status = d.wait(LONG);
    assert!(status.success(), "clean stop: {status:?}\n{}", d.log_text());
    let done_before = site.audit_events("succeeded").len();
    assert!(done_before < 60, "stopped mid-batch ({done_before} done)");
    assert!(
        !site.files(&site.inbox()).is_empty(),
        "the rest is left queued in the inbox"
    );
    // restart to finish; the exit status says whether this run rejected
    // broken.jpg (it may have been rejected before the SIGTERM)
    let rejected_before = site.rejected().join("broken.jpg").exists();
    let out = site.process(&[]);
    let expected = if rejected_before { 0 } else { 1 };
    assert_eq!(
        out.status.code(),
        Some(expected),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(site.rejected().join("broken.jpg.reason.json").exists());
    assert_each_input_in_one_place(&site, &inputs);
    assert_eq!(site.files(&site.outbox()).len(), 60);
}

#[test]
fn kill_9_then_restart_finishes_without_duplicates() {
    let site = Site::new("[queue]\nconcurrency = 2\n");
    let mut inputs = Vec::new();
    for i in 0..40u32 {
        let name = format!("k{i:02}.jpg");
        site.drop_file(&name, &jpeg(800, 600, 3000 + i));
        inputs.push(name);
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "some progress", || {
        site.audit_events("succeeded").len() >= 4
    });
    d.kill9();
    let out = site.process(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_each_input_in_one_place(&site, &inputs);
    assert_eq!(site.files(&site.outbox()).len(), 40);
    // no stray temp files anywhere
    for dir in [site.outbox(), site.archive()] {
        assert!(site.files(&dir).iter().all(|f| !f.ends_with(".cutout-tmp")));
    }
}

#[test]
fn a_second_process_on_the_same_state_is_refused() {
    let site = Site::new("");
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    let out = site.process(&[]);
    assert_eq!(out.status.code(), Some(4));
    assert!(String::from_utf8_lossy(&out.stderr).contains("in use by another cutout"));
    d.term();
    assert!(d.wait(LONG).success());
}

#[test]
fn process_accepts_paths_inside_an_inbox_only() {
    let site = Site::new("");
    site.drop_file("one/a.jpg", &jpeg(100, 80, 21));
    site.drop_file("two/b.jpg", &jpeg(100, 80, 22));
    let out = site.process(&[site.inbox().join("one").to_str().expect("utf8")]);
    assert!(out.status.success());
    assert!(site.outbox().join("one/a.png").exists());
    assert!(
        site.inbox().join("two/b.jpg").exists(),
        "only the given folder"
    );
    let out = site.process(&["/etc/hostname"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not inside a configured inbox"));
}

#[test]
fn no_config_runs_on_built_in_defaults_in_the_current_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("inbox")).expect("mkdir");
    std::fs::write(dir.path().join("inbox/p.jpg"), jpeg(200, 150, 23)).expect("write");
    let out = std::process::Command::new(bin())
        .arg("process")
        .current_dir(dir.path())
        .env_remove("CUTOUT_CONFIG")
        .env("CUTOUT_MODELS_DIR", dir.path().join("models"))
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_cutout(&dir.path().join("outbox/p.png"));
    assert!(dir.path().join(".cutout/audit.jsonl").exists());
    assert!(dir.path().join("archive/p.jpg").exists());
}
