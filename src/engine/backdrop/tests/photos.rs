//! PHOTOS

use super::*;

#[test]
fn real_sample_photos_corners_clear_centre_opaque() {
    let dir = std::path::Path::new("/work/shared/samples");
    if !dir.is_dir() {
        println!("skipping: {} is missing", dir.display());
        return;
    }
    for name in ["coffee.png", "chelsea.png", "astronaut.png"] {
        let path = dir.join(name);
        let img = match image::open(&path) {
            Ok(i) => i.to_rgba8(),
            Err(e) => {
                println!("skipping {}: {e}", path.display());
                continue;
            }
        };
        let out = run(&img);
        for r in corners(&out) {
            let m = mean_alpha(&out, r);
            assert!(m < 32.0, "{name}: corner {r:?} mean alpha {m}");
        }
        let c = mean_alpha(&out, frac(&out, 0.45, 0.45, 0.55, 0.55));
        assert!(c > 200.0, "{name}: centre mean alpha {c}");
    }
}

/// `cargo test --release -- --ignored twelve_megapixels --nocapture`
#[test]
#[ignore = "timing run on a 12 MP picture; slow in unoptimised builds"]
fn twelve_megapixels() {
    let img = shoe_scene(4000, 3000);
    let t = std::time::Instant::now();
    let out = run(&img);
    println!("12 MP cut-out took {:?}", t.elapsed());
    assert_corners_clear(&out);
}
