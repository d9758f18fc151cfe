//! RT

use super::super::runtime::{find_runtime_in, version_of};
use super::*;

#[test]
fn missing_model_says_how_to_get_it() {
    let opts = OnnxOptions::new(
        "/nonexistent/models/isnet-general-use.onnx",
        ModelKind::IsnetGeneralUse,
    );
    let err = OnnxEngine::load(&opts).unwrap_err();
    assert_eq!(err.code(), "model-missing");
    let text = err.to_string();
    assert!(
        text.contains("cutout models fetch isnet-general-use --dir /nonexistent/models"),
        "{text}"
    );
}

#[test]
fn missing_runtime_says_how_to_get_it() {
    let opts = OnnxOptions {
        runtime: Some(PathBuf::from("/nonexistent/libonnxruntime.so.1.31.1")),
        ..OnnxOptions::new(fixture("tiny.onnx"), ModelKind::U2netp)
    };
    let err = OnnxEngine::load(&opts).unwrap_err();
    assert_eq!(err.code(), "runtime-missing");
    let text = err.to_string();
    assert!(text.contains("cutout models fetch onnxruntime"), "{text}");
    assert!(
        text.contains("ORT_DYLIB_PATH") && text.contains("onnxruntime = "),
        "{text}"
    );
}

#[test]
fn runtime_is_found_in_the_model_folder() {
    let dir = std::env::temp_dir().join(format!("cutout-onnx-find-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for name in [
        "libonnxruntime.so.1.30.0",
        "libonnxruntime.so.1.31.1",
        "libonnxruntime_providers_shared.so",
    ] {
        std::fs::write(dir.join(name), b"").unwrap();
    }
    assert_eq!(
        find_runtime_in(&dir),
        Some(dir.join("libonnxruntime.so.1.31.1"))
    );
    assert_eq!(version_of(&dir.join("libonnxruntime.so.1.31.1")), "1.31.1");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<OnnxEngine>();
}

/// runtime: load, output shape, the mask follows the tiny model's R − B.
#[test]
fn tiny_model_masks_the_red_square() {
    let Some(engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
        return;
    };
    let d = engine.describe();
    assert!(
        d.starts_with("u2netp (tiny.onnx, 320², onnxruntime ")
            && d.ends_with(", 1 thread, memory arena on)"),
        "{d}"
    );
    let img = red_on_blue();
    let mask = engine.mask(&img).unwrap();
    assert_eq!(mask.dimensions(), (200, 150));
    assert!(mask.get_pixel(100, 75).0[0] >= 250);
    assert!(mask.get_pixel(62, 42).0[0] >= 200);
    assert!(mask.get_pixel(10, 10).0[0] <= 5);
    assert!(mask.get_pixel(190, 140).0[0] <= 5);
}

/// runtime: alpha is written, colours are the picture's own.
#[test]
fn tiny_model_cut_out_keeps_colours() {
    let Some(engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
        return;
    };
    let img = red_on_blue();
    let out = engine.cut_out(&img).unwrap();
    assert_eq!(out.dimensions(), img.dimensions());
    for (o, i) in out.pixels().zip(img.pixels()) {
        assert_eq!(
            o.0[..3],
            i.0[..3],
            "colours must not be blended toward black"
        );
    }
    assert!(out.get_pixel(100, 75).0[3] >= 250);
    assert!(out.get_pixel(5, 5).0[3] <= 5);
}

/// runtime: a float16 graph (input and output) gives the same mask.
#[test]
fn tiny_float16_model_matches_float32() {
    let Some(f32_engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
        return;
    };
    let Some(f16_engine) = tiny_engine("tiny-f16.onnx", PostOptions::default()) else {
        return;
    };
    assert!(f16_engine.describe().contains("float16 input"));
    let img = red_on_blue();
    let (a, b) = (
        f32_engine.mask(&img).unwrap(),
        f16_engine.mask(&img).unwrap(),
    );
    let worst = a
        .pixels()
        .zip(b.pixels())
        .map(|(p, q)| p.0[0].abs_diff(q.0[0]))
        .max()
        .unwrap();
    assert!(worst <= 2, "float16 mask differs by {worst}");
}

/// runtime: a model whose input does not fit the kind is refused with a hint.
#[test]
fn wrong_model_kind_is_a_clear_error() {
    let Some(runtime) = test_runtime() else {
        return;
    };
    let opts = OnnxOptions {
        runtime: Some(runtime),
        ..OnnxOptions::new(fixture("tiny.onnx"), ModelKind::IsnetGeneralUse)
    };
    let err = OnnxEngine::load(&opts).unwrap_err();
    assert_eq!(err.code(), "bad-model");
    assert!(err.to_string().contains("is `model_kind` right?"), "{err}");
}

/// runtime: several blocking threads share one engine.
#[test]
fn engine_serves_several_threads() {
    let Some(engine) = tiny_engine("tiny.onnx", PostOptions::default()) else {
        return;
    };
    let engine = Arc::new(engine);
    let handles: Vec<_> = (0..3)
        .map(|_| {
            let engine = Arc::clone(&engine);
            std::thread::spawn(move || {
                engine
                    .mask(&red_on_blue())
                    .map(|m| m.get_pixel(100, 75).0[0])
            })
        })
        .collect();
    for h in handles {
        assert!(h.join().unwrap().unwrap() >= 250);
    }
}

/// runtime: `sessions = 2` loads two sessions; six threads at once all get
/// the single-session mask, and every session is back in the pool after.
#[test]
fn session_pool_serves_threads_with_the_same_mask() {
    let Some(runtime) = test_runtime() else {
        return;
    };
    let one = tiny_engine("tiny.onnx", PostOptions::default()).expect("runtime found above");
    let expected = one.mask(&red_on_blue()).unwrap();
    let opts = OnnxOptions {
        runtime: Some(runtime),
        sessions: 2,
        ..OnnxOptions::new(fixture("tiny.onnx"), ModelKind::U2netp)
    };
    let engine = Arc::new(OnnxEngine::load(&opts).expect("the tiny model loads twice"));
    assert_eq!(engine.idle_sessions(), 2);
    assert!(
        engine.describe().contains("2 sessions"),
        "{}",
        engine.describe()
    );
    let start = Arc::new(std::sync::Barrier::new(6));
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (engine, start) = (Arc::clone(&engine), Arc::clone(&start));
            std::thread::spawn(move || {
                start.wait();
                engine.mask(&red_on_blue())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap().unwrap(), expected);
    }
    assert_eq!(engine.idle_sessions(), 2);
}

/// real model: CUTOUT_TEST_MODEL=…/isnet-general-use.onnx separates the cat from the background.
#[test]
fn real_model_separates_the_cat() {
    let Some(model) = std::env::var_os("CUTOUT_TEST_MODEL").filter(|p| !p.is_empty()) else {
        eprintln!("skipped: CUTOUT_TEST_MODEL is unset (`cutout models fetch isnet-general-use` gets the model)");
        return;
    };
    let kind = std::env::var("CUTOUT_TEST_MODEL_KIND")
        .ok()
        .map(|k| k.parse().unwrap())
        .unwrap_or(ModelKind::IsnetGeneralUse);
    let opts = OnnxOptions {
        threads: 2,
        ..OnnxOptions::new(model, kind)
    };
    let engine = OnnxEngine::load(&opts).unwrap();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/samples/chelsea.png");
    let img = image::open(&sample).unwrap().to_rgba8();
    let out = engine.cut_out(&img).unwrap();
    let (w, h) = out.dimensions();
    let alpha = |x: u32, y: u32| out.get_pixel(x, y).0[3];
    // The cat's head and chest fill the middle; the background is the corners.
    assert!(
        alpha(w / 2, h / 2) >= 200,
        "centre alpha {}",
        alpha(w / 2, h / 2)
    );
    for (x, y) in [(5, 5), (w - 6, 5)] {
        assert!(alpha(x, y) <= 30, "corner ({x},{y}) alpha {}", alpha(x, y));
    }
    let opaque = out.pixels().filter(|p| p.0[3] >= 128).count() as f64 / f64::from(w * h);
    assert!(
        (0.15..0.85).contains(&opaque),
        "subject covers {opaque:.2} of the picture"
    );
    if let Some(dir) = std::env::var_os("CUTOUT_TEST_OUT") {
        out.save(Path::new(&dir).join("chelsea-cutout.png"))
            .unwrap();
    }
}
