//! Several `[[inbox.output]]` files per input through the real binary:
//! every output name reserved (a user's file is never overwritten), the
//! same picture in two inboxes whose outputs differ (never paid twice),
//! outputs made from a hosted provider's result (the fake provider on
//! 127.0.0.1:0), CMYK and palette inputs, and no halo against white.

mod support;

use std::path::Path;

use fake_provider::{Config, Endpoint, FakeProvider};
use support::*;

const RKEY: &str = "test-rembg-key";

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

/// Two PNG outputs whose names can meet: `a.jpg` writes `a.png` and
/// `a-s.png`, `a-s.jpg` writes `a-s.png` and `a-s-s.png`.
const TWO: &str =
    "[[inbox.output]]\nformat = \"png\"\n\n[[inbox.output]]\nformat = \"png\"\nsuffix = \"-s\"\n";

#[test]
fn a_later_output_never_replaces_a_users_file() {
    let site = Site::new(TWO);
    let mine = b"the user's own file, not a cut-out".to_vec();
    std::fs::create_dir_all(site.outbox()).expect("outbox");
    std::fs::write(site.outbox().join("shoe-s.png"), &mine).expect("user file");
    site.drop_file("shoe.jpg", &jpeg(320, 240, 5));
    ok(&site.process(&[]));
    assert_eq!(
        std::fs::read(site.outbox().join("shoe-s.png")).expect("user file"),
        mine,
        "the user's file was overwritten"
    );
    // the whole set takes the next number, so it stays together
    assert!(!site.outbox().join("shoe.png").exists(), "set split up");
    assert_cutout(&site.outbox().join("shoe-2.png"));
    assert_cutout(&site.outbox().join("shoe-s-2.png"));
    let line = &site.audit_events("succeeded")[0];
    let o = site.outbox();
    let want = [o.join("shoe-2.png"), o.join("shoe-s-2.png")];
    let want: Vec<String> = want.iter().map(|p| p.display().to_string()).collect();
    assert_eq!(line["outputs"], serde_json::json!(want));
}

#[test]
fn an_output_never_replaces_another_inputs_output() {
    let site = Site::new(TWO);
    let first = jpeg(320, 240, 6);
    site.drop_file("a-s.jpg", &first);
    ok(&site.process(&[]));
    let theirs = std::fs::read(site.outbox().join("a-s.png")).expect("a-s.png");
    // `a.jpg`'s second output would be `a-s.png`: the set moves to number 2
    site.drop_file("a.jpg", &jpeg(300, 260, 7));
    ok(&site.process(&[]));
    assert_eq!(
        std::fs::read(site.outbox().join("a-s.png")).expect("a-s.png"),
        theirs,
        "a-s.jpg's cut-out was replaced"
    );
    assert_cutout(&site.outbox().join("a-2.png"));
    assert_cutout(&site.outbox().join("a-s-2.png"));
    // in one batch, side by side: every output name is different and on disk
    let cfg = format!("[queue]\nconcurrency = 2\n{TWO}");
    let site2 = Site::new(&cfg);
    site2.drop_file("b-s.jpg", &jpeg(320, 240, 8));
    site2.drop_file("b.jpg", &jpeg(300, 260, 9));
    ok(&site2.process(&[]));
    let mut names = Vec::new();
    for line in site2.audit_events("succeeded") {
        for o in line["outputs"].as_array().expect("outputs") {
            let p = o.as_str().expect("path").to_string();
            assert!(Path::new(&p).exists(), "{p}");
            names.push(p);
        }
    }
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!((n, names.len()), (4, 4), "{names:?}");
    assert_eq!(site2.files(&site2.outbox()).len(), 4);
}

/// Two inboxes: `inbox` with an amazon + cut-out pair, `inbox2` with a
/// thumbnail, both on `provider` (`extra` is the provider's section).
fn two_inboxes(provider: &str, extra: &str) -> Site {
    Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"{provider}\"\n\
         [[inbox.output]]\npreset = \"amazon\"\n\
         [[inbox.output]]\nformat = \"png\"\nsuffix = \"-cut\"\n\
         [[inbox]]\npath = \"inbox2\"\noutbox = \"outbox2\"\narchive = \"archive2\"\n\
         settle = \"100ms\"\nprovider = \"{provider}\"\n\
         [[inbox.output]]\npreset = \"thumbnail\"\n{extra}"
    ))
}

fn rembg_section(fake: &FakeProvider) -> String {
    format!(
        "[providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\nrequests_per_second = 50\nconcurrency = 2\n\
         timeout = \"10s\"\nrecheck_interval = \"200ms\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg()
    )
}

fn uploads(fake: &FakeProvider) -> usize {
    fake.count(|e| e.endpoint == Endpoint::RembgRemove && e.method == "POST")
}

#[test]
fn same_picture_in_an_inbox_with_other_outputs_is_finished_from_the_stored_cutout() {
    let fake = FakeProvider::start(Config::default());
    let site = two_inboxes("r", &rembg_section(&fake));
    std::fs::write(site.root().join("rembg.key"), format!("{RKEY}\n")).expect("key");
    let bytes = jpeg(640, 480, 21);
    site.drop_file("shoe.jpg", &bytes);
    ok(&site.process(&[]));
    assert_eq!(uploads(&fake), 1);
    std::fs::create_dir_all(site.root().join("inbox2")).expect("inbox2");
    std::fs::write(site.root().join("inbox2/boot.jpg"), &bytes).expect("drop");
    ok(&site.process(&[]));
    assert_eq!(uploads(&fake), 1, "the same picture was paid twice");
    let dup = &site.audit_events("duplicate")[0];
    let thumb = site.root().join("outbox2/boot.webp");
    assert_eq!(
        dup["outputs"],
        serde_json::json!([thumb.display().to_string()])
    );
    let t = open(&thumb);
    assert_eq!(t.dimensions(), (400, 400));
    assert_eq!(t.get_pixel(2, 2)[3], 0, "transparent around the subject");
    assert!(t.get_pixel(200, 200)[3] > 200, "the subject in the middle");
    assert!(site.root().join("archive2/boot.jpg").exists());

    // the stored cut-out gone: made again would pay twice, so it fails
    let stored = site.root().join("state/cutouts");
    std::fs::remove_dir_all(&stored).expect("stored cut-outs");
    std::fs::write(site.root().join("inbox2/sandal.jpg"), &bytes).expect("drop");
    let out = site.process(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(uploads(&fake), 1, "paid twice after the cut-out was gone");
    let failed = site.root().join("failed/sandal.jpg.reason.json");
    let reason = std::fs::read_to_string(&failed).expect("reason file");
    assert!(reason.contains("duplicate-cutout-gone"), "{reason}");
}

#[test]
fn same_picture_in_an_inbox_with_other_outputs_is_made_again_by_a_local_engine() {
    let site = two_inboxes("local", "");
    let bytes = jpeg(640, 480, 22);
    site.drop_file("shoe.jpg", &bytes);
    ok(&site.process(&[]));
    std::fs::create_dir_all(site.root().join("inbox2")).expect("inbox2");
    std::fs::write(site.root().join("inbox2/boot.jpg"), &bytes).expect("drop");
    ok(&site.process(&[]));
    let done = site.audit_events("succeeded");
    assert_eq!(done.len(), 2, "made again locally: {done:?}");
    let t = open(&site.root().join("outbox2/boot.webp"));
    assert_eq!(t.dimensions(), (400, 400));
    assert!(site.root().join("archive2/boot.jpg").exists());
    // a third copy in the first inbox is a plain duplicate of the first
    site.drop_file("again.jpg", &bytes);
    ok(&site.process(&[]));
    assert_eq!(site.audit_events("duplicate").len(), 1);
    assert_eq!(
        std::fs::read(site.outbox().join("again.jpg")).expect("copy"),
        std::fs::read(site.outbox().join("shoe.jpg")).expect("first")
    );
}

#[test]
fn outputs_from_a_hosted_result() {
    let fake = FakeProvider::start(Config::default());
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"r\"\n\
         [[inbox.output]]\npreset = \"amazon\"\n\
         [[inbox.output]]\nformat = \"png\"\nsuffix = \"-cut\"\n\
         [[inbox.output]]\nmask = true\nsuffix = \"-mask\"\n{}",
        rembg_section(&fake)
    ));
    std::fs::write(site.root().join("rembg.key"), format!("{RKEY}\n")).expect("key");
    site.drop_file("p.jpg", &jpeg(800, 600, 31));
    ok(&site.process(&[]));
    assert_eq!(uploads(&fake), 1);
    let amazon = open(&site.outbox().join("p.jpg"));
    assert_eq!(amazon.dimensions(), (2000, 2000));
    assert_eq!(amazon.get_pixel(3, 3).0[..3], [255, 255, 255]);
    assert!(amazon.get_pixel(1000, 1000).0[..3] != [255, 255, 255]);
    let cut = assert_cutout(&site.outbox().join("p-cut.png"));
    assert_eq!(cut.dimensions(), (800, 600));
    let mask = image::open(site.outbox().join("p-mask.png"))
        .expect("mask")
        .into_luma8();
    for (x, y, p) in cut.enumerate_pixels() {
        assert_eq!(mask.get_pixel(x, y)[0], p[3], "mask at {x},{y}");
    }
    let line = &site.audit_events("succeeded")[0];
    assert_eq!(line["outputs"].as_array().map(Vec::len), Some(3));
}

/// A CMYK JPEG (Adobe, as print workflows write them) of a packshot.
fn cmyk_jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let rgb = packshot(w, h, seed);
    let mut cmyk = Vec::with_capacity((w * h * 4) as usize);
    for p in rgb.pixels() {
        let [r, g, b] = p.0.map(|v| v as f32 / 255.0);
        let k = 1.0 - r.max(g).max(b);
        let d = (1.0 - k).max(1e-6);
        for v in [(1.0 - r - k) / d, (1.0 - g - k) / d, (1.0 - b - k) / d, k] {
            cmyk.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    let mut out = Vec::new();
    jpeg_encoder::Encoder::new(&mut out, 92)
        .encode(&cmyk, w as u16, h as u16, jpeg_encoder::ColorType::Cmyk)
        .expect("cmyk jpeg");
    out
}

/// A palette (indexed) PNG of a packshot: channels quantised until the
/// colours fit in 256.
fn palette_png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let rgb = packshot(w, h, seed);
    for step in [8u32, 16, 24, 32, 48, 64] {
        let q = |v: u8| ((v as u32 / step) * step + step / 2).min(255) as u8;
        let mut colours: Vec<[u8; 3]> = Vec::new();
        let mut index = Vec::with_capacity((w * h) as usize);
        for p in rgb.pixels() {
            let c = p.0.map(q);
            let i = match colours.iter().position(|k| *k == c) {
                Some(i) => i,
                None => {
                    colours.push(c);
                    colours.len() - 1
                }
            };
            index.push(i.min(255) as u8);
        }
        if colours.len() > 256 {
            continue;
        }
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(colours.concat());
        let mut wr = enc.write_header().expect("png header");
        wr.write_image_data(&index).expect("png data");
        wr.finish().expect("png end");
        return out;
    }
    panic!("too many colours for a palette");
}

#[test]
fn cmyk_and_palette_inputs_get_every_output() {
    let site = Site::new(
        "[[inbox.output]]\npreset = \"amazon\"\n\n[[inbox.output]]\nformat = \"png\"\nsuffix = \"-cut\"\n\n[[inbox.output]]\npreset = \"thumbnail\"\n",
    );
    let p = palette_png(400, 300, 41);
    assert_eq!(p[25], 3, "colour type 3: indexed");
    site.drop_file("cmyk.jpg", &cmyk_jpeg(400, 300, 40));
    site.drop_file("palette.png", &p);
    ok(&site.process(&[]));
    for stem in ["cmyk", "palette"] {
        let amazon = open(&site.outbox().join(format!("{stem}.jpg")));
        assert_eq!(amazon.dimensions(), (2000, 2000), "{stem}");
        assert_eq!(amazon.get_pixel(3, 3).0[..3], [255, 255, 255], "{stem}");
        // the red subject stays red (CMYK read as colours, not inverted)
        let c = amazon.get_pixel(1000, 1000).0;
        assert!(c[0] > 100 && c[1] < 90, "{stem}: centre {c:?}");
        let cut = assert_cutout(&site.outbox().join(format!("{stem}-cut.png")));
        assert_eq!(cut.dimensions(), (400, 300), "{stem}");
        let thumb = open(&site.outbox().join(format!("{stem}-thumbnail.webp")));
        assert_eq!(thumb.dimensions(), (400, 400), "{stem}");
    }
    assert_eq!(site.audit_events("succeeded").len(), 2);
}

#[test]
fn no_halo_against_white() {
    // the transparent cut-out and the same frame flattened onto white
    let site = Site::new(
        "[[inbox.output]]\nformat = \"png\"\n\n[[inbox.output]]\nformat = \"png\"\nbackground = \"#FFFFFF\"\nsuffix = \"-white\"\n",
    );
    let input = packshot(600, 450, 51);
    site.drop_file("p.png", &encode(&input, image::ImageFormat::Png));
    ok(&site.process(&[]));
    let cut = open(&site.outbox().join("p.png"));
    let white = open(&site.outbox().join("p-white.png"));
    // In the edge ring the ideal is the object's colour over white by the
    // cut-out's alpha; flattening the original edge pixels (which hold the
    // old backdrop) would be off by about a(1-a)(backdrop - object).
    // Green shows it best: object ~26, backdrop ~240.
    let (mut ours, mut naive, mut n) = (0.0f64, 0.0f64, 0usize);
    for (x, y, c) in cut.enumerate_pixels() {
        let a = c[3] as f64 / 255.0;
        if !(0.15..=0.85).contains(&a) {
            continue;
        }
        let ideal = 26.5 * a + 255.0 * (1.0 - a);
        let orig = input.get_pixel(x, y)[1] as f64;
        ours += (white.get_pixel(x, y)[1] as f64 - ideal).abs();
        naive += (orig * a + 255.0 * (1.0 - a) - ideal).abs();
        n += 1;
    }
    assert!(n > 100, "an edge ring to measure ({n} pixels)");
    let (ours, naive) = (ours / n as f64, naive / n as f64);
    eprintln!("edge ring {n} px: mean green error {ours:.1} (naive {naive:.1})");
    assert!(
        ours <= 12.0 && ours <= naive / 2.0,
        "halo: mean green error {ours:.1} in the edge ring (naive flattening {naive:.1})"
    );
    // away from the subject the background is exactly white
    assert_eq!(white.get_pixel(2, 2).0, [255, 255, 255, 255]);
}
