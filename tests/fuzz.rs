//! Property tests (run briefly in the default suite; raise PROPTEST_CASES for
//! a longer fuzz): the validator and the config loader never panic, and
//! their errors are the typed, named ones.

use std::path::Path;

use cutout::config::{self, Limits};
use cutout::validate;
use proptest::prelude::*;

fn limits() -> Limits {
    Limits {
        max_file_size: 1 << 20,
        max_width: 4000,
        max_height: 4000,
        max_pixels: 4_000_000,
    }
}

fn seed_images() -> Vec<Vec<u8>> {
    let img = image::RgbImage::from_fn(24, 16, |x, y| {
        image::Rgb([(x * 9) as u8, (y * 13) as u8, 77])
    });
    let mut out = Vec::new();
    for fmt in [
        image::ImageFormat::Png,
        image::ImageFormat::Jpeg,
        image::ImageFormat::WebP,
    ] {
        let mut b = Vec::new();
        image::DynamicImage::ImageRgb8(img.clone())
            .write_to(&mut std::io::Cursor::new(&mut b), fmt)
            .expect("encode");
        out.push(b);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    /// Random bytes: never a panic; either a picture or a coded rejection.
    #[test]
    fn validator_survives_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        match validate::validate(bytes.into(), &limits(), true) {
            Ok(v) => prop_assert!(v.width > 0 && v.height > 0),
            Err(r) => prop_assert!(!r.code().as_str().is_empty()),
        }
    }

    /// Real pictures with random byte flips, truncations and insertions.
    #[test]
    fn validator_survives_mutated_pictures(
        which in 0usize..3,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..12),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut b = seed_images()[which].clone();
        for (i, v) in flips {
            let at = i.index(b.len());
            b[at] = v;
        }
        if truncate {
            let at = cut.index(b.len());
            b.truncate(at);
        }
        let _ = validate::validate(b.into(), &limits(), true);
    }

    /// Random TOML-ish text: the loader never panics, and every error names
    /// the file it came from.
    #[test]
    fn config_loader_survives_random_text(text in "[ -~\n]{0,300}") {
        if let Err(e) = config::from_str(&text, Some(Path::new("/x/fuzz.toml")), Path::new("/x")) {
            prop_assert!(e.to_string().contains("fuzz.toml"), "{}", e);
        }
    }

    /// Structured configs with random values in known keys.
    #[test]
    fn config_loader_survives_random_values(
        size in "[0-9a-zA-Z .]{0,12}",
        dur in "[0-9a-z ]{0,8}",
        conc in any::<i64>(),
        q in any::<i64>(),
        fmt in "[a-z]{0,6}",
    ) {
        let text = format!(
            "[limits]\nmax_file_size = {size:?}\n[queue]\nconcurrency = {conc}\n[[inbox]]\npath = \"in\"\nsettle = {dur:?}\nwebp_quality = {q}\noutput_format = {fmt:?}\n"
        );
        if let Err(e) = config::from_str(&text, Some(Path::new("/x/fuzz.toml")), Path::new("/x")) {
            let s = e.to_string();
            prop_assert!(s.contains("fuzz.toml"), "{}", s);
        }
    }
}
