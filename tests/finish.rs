//! Finishing (`[[inbox.output]]`) through the real binary and the built-in
//! engine: generated packshots with a known subject, every output checked
//! by its pixels (canvas, subject share and centring, white background,
//! shadow, mask), several outputs per input as one unit (duplicates, kill
//! -9), and the config check at start.

mod support;

use std::path::Path;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(180);

fn ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn open(p: &Path) -> image::RgbaImage {
    image::open(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .into_rgba8()
}

/// The box (x0, y0, x1, y1, exclusive) of pixels `is_subject` says belong
/// to the subject.
fn subject_box(
    img: &image::RgbaImage,
    is_subject: impl Fn(&image::Rgba<u8>) -> bool,
) -> (u32, u32, u32, u32) {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if is_subject(p) {
            x0 = x0.min(x);
            y0 = y0.min(y);
            x1 = x1.max(x + 1);
            y1 = y1.max(y + 1);
        }
    }
    assert!(x1 > x0 && y1 > y0, "no subject found");
    (x0, y0, x1, y1)
}

fn not_white(p: &image::Rgba<u8>) -> bool {
    p[0] < 235 || p[1] < 235 || p[2] < 235
}

const THREE: &str = r#"
[[inbox.output]]
preset = "amazon"

[[inbox.output]]
format = "png"
suffix = "-cutout"

[[inbox.output]]
preset = "thumbnail"
folder = "thumbs"
"#;

#[test]
fn amazon_cutout_and_thumbnail_from_one_input() {
    let site = Site::new(THREE);
    site.drop_file("shop/shoe.jpg", &jpeg(2000, 1500, 41));
    ok(&site.process(&[]));
    assert_eq!(
        site.files(&site.outbox()),
        vec![
            "shop/shoe-cutout.png",
            "shop/shoe.jpg",
            "thumbs/shop/shoe-thumbnail.webp"
        ]
    );
    // amazon: 2000x2000 JPEG, subject fills 85 % along its limiting side, centred
    let amazon = open(&site.outbox().join("shop/shoe.jpg"));
    assert_eq!(amazon.dimensions(), (2000, 2000));
    let (x0, y0, x1, y1) = subject_box(&amazon, not_white);
    let (bw, bh) = (x1 - x0, y1 - y0);
    let share = bw.max(bh) as f64 / 2000.0;
    assert!(
        (share - 0.85).abs() <= 0.01,
        "subject share {share}, box {bw}x{bh}"
    );
    let (cx, cy) = ((x0 + x1) as f64 / 2.0, (y0 + y1) as f64 / 2.0);
    assert!(
        (cx - 1000.0).abs() <= 20.0 && (cy - 1000.0).abs() <= 20.0,
        "centre {cx},{cy}"
    );
    // pure white away from the subject's edge, after JPEG encoding
    for (x, y, p) in amazon.enumerate_pixels() {
        let far = x + 12 < x0 || x >= x1 + 12 || y + 12 < y0 || y >= y1 + 12;
        if far {
            assert_eq!(p.0[..3], [255, 255, 255], "background at {x},{y}");
        }
    }
    // the transparent cut-out is the input's frame; the thumbnail 400x400
    let cut = assert_cutout(&site.outbox().join("shop/shoe-cutout.png"));
    assert_eq!(cut.dimensions(), (2000, 1500));
    let thumb = open(&site.outbox().join("thumbs/shop/shoe-thumbnail.webp"));
    assert_eq!(thumb.dimensions(), (400, 400));
    assert_eq!(
        thumb.get_pixel(2, 2)[3],
        0,
        "thumbnail is transparent around"
    );
    // the audit line names every output in config order, `output` the first
    let ok_line = &site.audit_events("succeeded")[0];
    let o = site.outbox();
    let want: Vec<String> = [
        "shop/shoe.jpg",
        "shop/shoe-cutout.png",
        "thumbs/shop/shoe-thumbnail.webp",
    ]
    .iter()
    .map(|r| o.join(r).to_string_lossy().into_owned())
    .collect();
    assert_eq!(ok_line["outputs"], serde_json::json!(want));
    assert_eq!(ok_line["output"], serde_json::json!(want[0]));
}

#[test]
fn margins_shadow_and_mask() {
    let site = Site::new(
        r##"
[[inbox.output]]
format = "png"
background = "#FFFFFF"
crop = "subject"
canvas = "600x600"
margin = "60px"
suffix = "-plain"

[[inbox.output]]
format = "png"
background = "#FFFFFF"
crop = "subject"
canvas = "600x600"
margin = "60px"
shadow = "soft"
suffix = "-shadow"

[[inbox.output]]
format = "png"
suffix = "-cut"

[[inbox.output]]
mask = true
suffix = "-mask"
"##,
    );
    site.drop_file("p.png", &png(500, 400, 7));
    ok(&site.process(&[]));
    let plain = open(&site.outbox().join("p-plain.png"));
    assert_eq!(plain.dimensions(), (600, 600));
    let (x0, y0, x1, y1) = subject_box(&plain, |p| p.0[..3] != [255, 255, 255]);
    // the subject's limiting side touches the margins (60 px each side, ±1 %)
    let near = |a: u32, b: u32| (a as i64 - b as i64).abs() <= 6;
    assert!(
        (near(x0, 60) && near(x1, 540)) || (near(y0, 60) && near(y1, 540)),
        "box {x0},{y0}-{x1},{y1} inside 60 px margins"
    );
    assert!(
        x0 >= 54 && y0 >= 54 && x1 <= 546 && y1 <= 546,
        "margins kept"
    );
    // shadow only when asked: below the subject the plain one stays white
    let shadow = open(&site.outbox().join("p-shadow.png"));
    let below = |img: &image::RgbaImage| {
        (x0..x1)
            .flat_map(|x| (y1 + 2..(y1 + 30).min(600)).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[..3] != [255, 255, 255])
            .count()
    };
    assert_eq!(below(&plain), 0, "no shadow unless asked");
    assert!(below(&shadow) > 50, "a soft shadow under the subject");
    // the mask is the cut-out's alpha, exactly
    let cut = open(&site.outbox().join("p-cut.png"));
    let mask = image::open(site.outbox().join("p-mask.png"))
        .expect("mask")
        .into_luma8();
    assert_eq!(mask.dimensions(), cut.dimensions());
    for (x, y, p) in cut.enumerate_pixels() {
        assert_eq!(mask.get_pixel(x, y)[0], p[3], "mask at {x},{y}");
    }
}

#[test]
fn a_duplicate_gets_all_outputs_without_a_second_cutout() {
    let site = Site::new(THREE);
    let bytes = jpeg(640, 480, 9);
    site.drop_file("a.jpg", &bytes);
    ok(&site.process(&[]));
    site.drop_file("b/a2.jpg", &bytes);
    ok(&site.process(&[]));
    assert_eq!(site.audit_events("succeeded").len(), 1, "cut out once");
    let dup = &site.audit_events("duplicate")[0];
    assert_eq!(dup["outputs"].as_array().map(Vec::len), Some(3));
    for (a, b) in [
        ("a.jpg", "b/a2.jpg"),
        ("a-cutout.png", "b/a2-cutout.png"),
        ("thumbs/a-thumbnail.webp", "thumbs/b/a2-thumbnail.webp"),
    ] {
        let (pa, pb) = (site.outbox().join(a), site.outbox().join(b));
        assert_eq!(
            std::fs::read(&pa).expect("earlier"),
            std::fs::read(&pb).expect("copy"),
            "{b}"
        );
    }
}

#[test]
fn unusual_inputs_are_finished_upright() {
    let site = Site::new(
        "[[inbox.output]]\nformat = \"png\"\n\n[[inbox.output]]\npreset = \"ebay\"\nsuffix = \"-ebay\"\n",
    );
    let rgb = packshot(300, 200, 15);
    let rgb16 = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(300, 200, |x, y| {
        let p = rgb.get_pixel(x, y);
        image::Rgb([p[0] as u16 * 257, p[1] as u16 * 257, p[2] as u16 * 257])
    });
    let mut b16 = Vec::new();
    image::DynamicImage::ImageRgb16(rgb16)
        .write_to(&mut std::io::Cursor::new(&mut b16), image::ImageFormat::Png)
        .expect("png16");
    site.drop_file("sixteen.png", &b16);
    site.drop_file("rotated.jpg", &exif_rotated(&jpeg(300, 200, 15)));
    ok(&site.process(&[]));
    let r = open(&site.outbox().join("rotated.png"));
    assert_eq!(r.dimensions(), (200, 300), "EXIF orientation applied");
    let s = open(&site.outbox().join("sixteen.png"));
    assert_eq!(s.dimensions(), (300, 200));
    for n in ["rotated-ebay.jpg", "sixteen-ebay.jpg"] {
        let img = open(&site.outbox().join(n));
        assert_eq!(img.dimensions(), (1600, 1600), "{n}");
        assert_eq!(img.get_pixel(3, 3).0[..3], [255, 255, 255], "{n}");
    }
    // the rotated subject is taller than wide on its canvas
    let e = open(&site.outbox().join("rotated-ebay.jpg"));
    let (x0, y0, x1, y1) = subject_box(&e, not_white);
    assert!(y1 - y0 > x1 - x0, "rotated subject upright");
}

/// JPEG bytes with an EXIF orientation 6 (rotate 90° clockwise) segment.
fn exif_rotated(jpeg_bytes: &[u8]) -> Vec<u8> {
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
    exif
}

#[test]
fn bad_output_tables_name_key_and_file_and_exit_3() {
    let cases = [
        ("format = \"jpeg\"\n", "inbox[0].output[0].background"),
        ("preset = \"etsy\"\n", "inbox[0].output[0].preset"),
        (
            "fill = \"120%\"\ncanvas = \"square\"\ncrop = \"subject\"\n",
            "inbox[0].output[0].fill",
        ),
        (
            "canvas = \"100x100\"\nmargin = \"60px\"\n",
            "inbox[0].output[0].margin",
        ),
        (
            "format = \"png\"\n\n[[inbox.output]]\nformat = \"png\"\nsuffix = \"\"\n",
            "inbox[0].output[1].suffix",
        ),
    ];
    for (table, key) in cases {
        let site = Site::new(&format!("[[inbox.output]]\n{table}"));
        let out = site.process(&[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{table}: {err}");
        assert!(err.contains(key), "{table}: error names {key}: {err}");
        assert!(
            err.contains("cutout.toml"),
            "{table}: error names the file: {err}"
        );
    }
}

#[test]
fn check_and_dry_run_show_the_outputs() {
    let site = Site::new(THREE);
    let out = site.cmd(&["check"]).output().expect("check");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("output[0] <stem>.jpg"), "{text}");
    assert!(
        text.contains("canvas = \"2000x2000\""),
        "preset values filled in: {text}"
    );
    assert!(
        text.contains("output[2] thumbs/<stem>-thumbnail.webp"),
        "{text}"
    );
    site.drop_file("x.jpg", &jpeg(200, 150, 3));
    let out = site.process(&["--dry-run"]);
    ok(&out);
    // the plan is on stdout, one line per input, every output in order
    let plan = String::from_utf8_lossy(&out.stdout);
    let o = site.outbox();
    let want = format!(
        "{} -> {}, {}, {}",
        site.inbox().join("x.jpg").display(),
        o.join("x.jpg").display(),
        o.join("x-cutout.png").display(),
        o.join("thumbs/x-thumbnail.webp").display()
    );
    assert!(plan.lines().any(|l| l == want), "{want:?} in {plan}");
    assert!(
        site.files(&site.outbox()).is_empty(),
        "dry run writes nothing"
    );
}

#[test]
fn kill_9_with_several_outputs_leaves_all_or_none() {
    let site = Site::new(&format!("[queue]\nconcurrency = 2\n{THREE}"));
    let mut stems = Vec::new();
    for i in 0..24u32 {
        let stem = format!("k{i:02}");
        site.drop_file(&format!("{stem}.jpg"), &jpeg(900, 700, 500 + i));
        stems.push(stem);
    }
    let mut d = site.spawn_daemon();
    wait_until(LONG, "some progress", || {
        site.audit_events("succeeded").len() >= 3
    });
    d.kill9();
    // just after the kill: an input counted in the audit has all outputs
    for line in site.audit_events("succeeded") {
        for o in line["outputs"].as_array().expect("outputs") {
            assert!(Path::new(o.as_str().expect("path")).exists(), "{o}");
        }
    }
    // an input already archived (decided) has every output on disk
    for done in site.files(&site.archive()) {
        let stem = done.trim_end_matches(".jpg");
        for f in [
            format!("{stem}.jpg"),
            format!("{stem}-cutout.png"),
            format!("thumbs/{stem}-thumbnail.webp"),
        ] {
            assert!(
                site.outbox().join(&f).exists(),
                "{done} archived without {f}"
            );
        }
    }
    ok(&site.process(&[]));
    let files = site.files(&site.outbox());
    for stem in &stems {
        for f in [
            format!("{stem}.jpg"),
            format!("{stem}-cutout.png"),
            format!("thumbs/{stem}-thumbnail.webp"),
        ] {
            assert!(files.contains(&f), "{f} missing: {files:?}");
            assert!(image::open(site.outbox().join(&f)).is_ok(), "{f} readable");
        }
    }
    assert_eq!(
        files.len(),
        3 * stems.len(),
        "no extra or temp files: {files:?}"
    );
    assert!(site.files(&site.inbox()).is_empty());
    assert_eq!(site.audit_events("succeeded").len(), stems.len());
}
