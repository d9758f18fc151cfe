//! The local AI engine through the real binary and the real ONNX Runtime
//! library: a tiny shipped model (tests/fixtures/onnx) for loading,
//! preprocessing, output shape and alpha writing; the real IS-Net model when
//! `CUTOUT_TEST_MODEL` points to it. Tests that need the runtime library
//! (`ORT_DYLIB_PATH`, installed by scripts/test.sh) say why they skip.

mod support;

use std::path::{Path, PathBuf};

use support::*;

fn runtime() -> Option<PathBuf> {
    match std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
        Some(p) if p.is_file() => Some(p),
        _ => {
            eprintln!("SKIPPED: ORT_DYLIB_PATH does not name the ONNX Runtime library (scripts/test.sh installs it from PyPI)");
            None
        }
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

/// A red square on blue: the tiny model's mask is R − B, so the square is
/// foreground and the blue is background.
fn red_on_blue(w: u32, h: u32) -> Vec<u8> {
    let img = image::RgbImage::from_fn(w, h, |x, y| {
        let inside = x > w / 4 && x < 3 * w / 4 && y > h / 4 && y < 3 * h / 4;
        if inside {
            image::Rgb([230, 20, 20])
        } else {
            image::Rgb([20, 20, 230])
        }
    });
    encode(&img, image::ImageFormat::Png)
}

fn onnx_site(model: &Path, kind: &str, lib: &Path, extra: &str) -> Site {
    Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"ai\"\n\
         [providers.ai]\nkind = \"local\"\nengine = \"onnx\"\nmodel = {:?}\nmodel_kind = {kind:?}\nonnxruntime = {:?}\n{extra}",
        model.display().to_string(),
        lib.display().to_string()
    ))
}

#[test]
fn tiny_model_float32_and_float16_through_the_real_runtime() {
    let Some(lib) = runtime() else { return };
    for model in ["tiny.onnx", "tiny-f16.onnx"] {
        let site = onnx_site(&fixture(model), "u2netp", &lib, "threads = 1\n");
        site.drop_file("square.png", &red_on_blue(400, 300));
        let out = site.process(&[]);
        assert!(
            out.status.success(),
            "{model}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let img = image::open(site.outbox().join("square.png"))
            .expect("cut-out")
            .into_rgba8();
        assert_eq!(
            img.dimensions(),
            (400, 300),
            "{model}: resized back to the picture's size"
        );
        let centre = img.get_pixel(200, 150);
        // min–max scaling: Lanczos overshoot at the square's edge is the
        // maximum, so the flat inside sits a little below 255
        assert!(centre[3] > 200, "{model}: square opaque, got {centre:?}");
        assert!(
            centre[0] > 200 && centre[2] < 60,
            "{model}: original colour kept, not blended: {centre:?}"
        );
        for (x, y) in [(5, 5), (395, 5), (5, 295), (395, 295)] {
            let a = img.get_pixel(x, y)[3];
            assert!(
                a < 16,
                "{model}: background transparent at ({x},{y}), alpha {a}"
            );
        }
        let log = String::from_utf8_lossy(&out.stderr);
        assert!(
            log.contains("onnxruntime") || log.contains("ONNX"),
            "{model}: engine named at start: {log}"
        );
    }
}

#[test]
fn a_missing_model_is_a_clear_start_up_error() {
    let site = Site::new(
        "[[inbox]]\npath = \"inbox\"\nprovider = \"ai\"\n[providers.ai]\nkind = \"local\"\nengine = \"onnx\"\nmodel = \"models/nope.onnx\"\n",
    );
    let out = site.process(&[]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nope.onnx") && err.contains("cutout models fetch"),
        "says how to get it: {err}"
    );
    // engine = "onnx" without a model names the key
    let site = Site::new("[[inbox]]\npath = \"inbox\"\nprovider = \"ai\"\n[providers.ai]\nkind = \"local\"\nengine = \"onnx\"\n");
    let out = site.process(&[]);
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("providers.ai.model"));
}

#[test]
fn auto_falls_back_to_the_built_in_engine_and_says_so() {
    let site = Site::new(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"ai\"\n[providers.ai]\nkind = \"local\"\nengine = \"auto\"\nmodel = \"models/absent.onnx\"\n",
    );
    site.drop_file("shoe.jpg", &jpeg(240, 180, 90));
    let out = site.process(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(log.contains("built-in"), "the log says which engine: {log}");
    assert_cutout(&site.outbox().join("shoe.png"));
}

#[test]
fn real_isnet_model_separates_the_cat() {
    let Some(model) = std::env::var_os("CUTOUT_TEST_MODEL").map(PathBuf::from) else {
        eprintln!("SKIPPED: set CUTOUT_TEST_MODEL to the IS-Net model (`cutout models fetch isnet-general-use --dir models`)");
        return;
    };
    let Some(lib) = runtime() else { return };
    let site = onnx_site(&model, "isnet-general-use", &lib, "threads = 2\n");
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples/chelsea.png");
    std::fs::copy(&sample, site.inbox().join("chelsea.png")).expect("copy");
    let out = site.process(&[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let img = image::open(site.outbox().join("chelsea.png"))
        .expect("cut-out")
        .into_rgba8();
    let (w, h) = img.dimensions();
    let mean = |x0: u32, y0: u32, x1: u32, y1: u32| {
        let mut s = 0u64;
        for y in y0..y1 {
            for x in x0..x1 {
                s += img.get_pixel(x, y)[3] as u64;
            }
        }
        s as f64 / ((x1 - x0) * (y1 - y0)) as f64
    };
    let centre = mean(w * 2 / 5, h * 2 / 5, w * 3 / 5, h * 3 / 5);
    let corners = [
        mean(0, 0, w / 10, h / 10),
        mean(w - w / 10, 0, w, h / 10),
        mean(0, h - h / 10, w / 10, h),
        mean(w - w / 10, h - h / 10, w, h),
    ];
    eprintln!("IS-Net on chelsea.png: centre mean alpha {centre:.1}, corners {corners:?}");
    assert!(centre > 200.0, "cat opaque: centre mean alpha {centre}");
    // The cat's body runs into the bottom-left corner of this photo; the
    // right-hand corners are wall and must be cut away.
    assert!(
        corners[1] < 10.0 && corners[3] < 10.0,
        "background transparent: corner mean alphas {corners:?}"
    );
}
