//! End-to-end tests of [`finish`] on generated packshots with known alpha:
//! canvas size, subject share and centring, margins, background exactness
//! (also after JPEG), no halo against white, shadow, mask, sRGB, names.

use super::*;
use image::{DynamicImage, Rgba};

const FG: [u8; 3] = [180, 40, 30];

/// Coverage (0–1) of the ellipse centred at (cx, cy) with radii (rx, ry)
/// over the pixel (x, y), 8×8 supersampled.
fn coverage(x: f64, y: f64, cx: f64, cy: f64, rx: f64, ry: f64) -> f64 {
    let mut n = 0;
    for i in 0..8 {
        for j in 0..8 {
            let px = x + (i as f64 + 0.5) / 8.0;
            let py = y + (j as f64 + 0.5) / 8.0;
            if ((px - cx) / rx).powi(2) + ((py - cy) / ry).powi(2) <= 1.0 {
                n += 1;
            }
        }
    }
    n as f64 / 64.0
}

/// A `w`×`h` cut-out: an ellipse of the un-mixed colour FG with an
/// anti-aliased edge; fully transparent pixels carry bright green (what a
/// careless resize or flatten would leak).
fn packshot(w: u32, h: u32, cx: f64, cy: f64, rx: f64, ry: f64) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, y| {
        let a = (coverage(x as f64, y as f64, cx, cy, rx, ry) * 255.0).round() as u8;
        if a == 0 {
            Rgba([0, 255, 0, 0])
        } else {
            Rgba([FG[0], FG[1], FG[2], a])
        }
    })
}

fn spec(toml_text: &str) -> OutputSpec {
    let raw: RawOutput = toml::from_str(toml_text).expect("toml");
    raw.check(1).expect("valid spec")
}

fn decode(f: &Finished) -> DynamicImage {
    image::load_from_memory(&f.bytes).expect("finished bytes decode")
}

/// Box of the pixels that are not pure white (JPEG noise aside: < 250).
fn non_white_box(img: &image::RgbImage) -> frame::Rect {
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0, 0);
    for (x, y, p) in img.enumerate_pixels() {
        if p.0.iter().any(|&c| c < 250) {
            (x0, y0, x1, y1) = (x0.min(x), y0.min(y), x1.max(x), y1.max(y));
        }
    }
    frame::Rect {
        x: x0,
        y: y0,
        w: x1 - x0 + 1,
        h: y1 - y0 + 1,
    }
}

#[test]
fn amazon_jpeg_square_85_percent_centred_pure_white() {
    // A 1400×900 photo, subject 1000×500 off-centre (1.7× reaches 85 %).
    let cut = packshot(1400, 900, 650.0, 400.0, 500.0, 250.0);
    let f = finish(&cut, None, &spec("preset = \"amazon\"")).expect("finish");
    assert_eq!((f.extension, f.width, f.height), ("jpg", 2000, 2000));
    let img = decode(&f).to_rgb8();
    assert_eq!(img.dimensions(), (2000, 2000));
    let b = non_white_box(&img);
    // Limiting side: width 800 → 85 % of 2000 = 1700 (±1 %).
    assert!((b.w as f64 - 1700.0).abs() <= 20.0, "{b:?}");
    assert!((b.h as f64 - 850.0).abs() <= 20.0, "{b:?}");
    let (cx, cy) = (b.x as f64 + b.w as f64 / 2.0, b.y as f64 + b.h as f64 / 2.0);
    assert!(
        (cx - 1000.0).abs() <= 20.0 && (cy - 1000.0).abs() <= 20.0,
        "{b:?}"
    );
    // Every pixel 16 px or more away from the subject's box: exactly white.
    let mut checked = 0;
    for (x, y, p) in img.enumerate_pixels() {
        let near = x + 16 > b.x && x < b.x + b.w + 16 && y + 16 > b.y && y < b.y + b.h + 16;
        if !near {
            assert_eq!(p.0, [255, 255, 255], "at {x},{y}");
            checked += 1;
        }
    }
    assert!(checked > 2_000_000, "{checked}");
}

#[test]
fn white_background_exact_after_jpeg_next_to_a_straight_edge() {
    // An opaque box edge: blocks right next to it ring, blocks 16 px away must not.
    let cut = RgbaImage::from_fn(256, 256, |x, y| {
        if (64..192).contains(&x) && (64..192).contains(&y) {
            Rgba([20, 20, 20, 255])
        } else {
            Rgba([0, 0, 0, 0])
        }
    });
    let s = spec("format = \"jpeg\"\nbackground = \"#FFFFFF\"\nquality = 90");
    let img = decode(&finish(&cut, None, &s).expect("finish")).to_rgb8();
    for (x, y, p) in img.enumerate_pixels() {
        let far = !(48..208).contains(&x) || !(48..208).contains(&y);
        if far {
            assert_eq!(p.0, [255, 255, 255], "at {x},{y}");
        }
    }
}

#[test]
fn margins_in_pixels_on_a_square_canvas() {
    let cut = packshot(600, 400, 300.0, 200.0, 200.0, 100.0);
    let s = spec(
        "crop = \"subject\"\ncanvas = \"square\"\nmargin = \"40px\"\nbackground = \"#FFFFFF\"",
    );
    let f = finish(&cut, None, &s).expect("finish");
    let img = decode(&f).to_rgb8();
    // Subject box 400×200 (+ rounding of the anti-aliased rim) + 2×40.
    assert_eq!(img.dimensions(), (f.width, f.height));
    assert!((479..=482).contains(&f.width), "{}", f.width);
    let b = non_white_box(&img);
    assert!(b.x.abs_diff(40) <= 1, "left margin {b:?}");
    assert!(
        (f.width - b.x - b.w).abs_diff(40) <= 1,
        "right margin {b:?}"
    );
    let top = b.y;
    let bottom = f.height - b.y - b.h;
    assert!(top.abs_diff(bottom) <= 1, "centred vertically {b:?}");
}

#[test]
fn default_transparent_png_is_the_cut_out_unchanged() {
    let cut = packshot(320, 240, 160.0, 120.0, 100.0, 60.0);
    let f = finish(&cut, None, &spec("")).expect("finish");
    assert_eq!(f.extension, "png");
    let back = decode(&f).to_rgba8();
    assert_eq!(back.dimensions(), cut.dimensions());
    for (x, y, p) in back.enumerate_pixels() {
        let want = cut.get_pixel(x, y);
        // Fully transparent pixels carry no colour (written as 0,0,0,0).
        let want = if want[3] == 0 {
            Rgba([0, 0, 0, 0])
        } else {
            *want
        };
        assert!(*p == want, "at {x},{y}: {p:?} vs {want:?}");
    }
}

#[test]
fn mask_equals_the_alpha() {
    let cut = packshot(320, 240, 160.0, 120.0, 100.0, 60.0);
    let f = finish(&cut, None, &spec("mask = true")).expect("finish");
    let m = decode(&f);
    assert!(
        matches!(m, DynamicImage::ImageLuma8(_)),
        "grey: {:?}",
        m.color()
    );
    let m = m.to_luma8();
    for (x, y, v) in m.enumerate_pixels() {
        assert_eq!(v[0], cut.get_pixel(x, y)[3], "at {x},{y}");
    }
    // Framed mask: the alpha of the subject box, on black.
    let s = spec("mask = true\ncrop = \"subject\"\nmargin = \"10px\"");
    let m = decode(&finish(&cut, None, &s).expect("finish")).to_luma8();
    let b = frame::subject_box(&cut, 16).expect("box");
    assert_eq!(m.dimensions(), (b.w + 20, b.h + 20));
    for (x, y, v) in m.enumerate_pixels() {
        let inside = (10..10 + b.w).contains(&x) && (10..10 + b.h).contains(&y);
        let want = if inside {
            cut.get_pixel(b.x + x - 10, b.y + y - 10)[3]
        } else {
            0
        };
        assert_eq!(v[0], want, "at {x},{y}");
    }
}

/// Mean and max colour error on the edge ring (0 < alpha < 255) of `img`
/// against the ideal composite of the un-mixed FG over white with the same
/// alpha: `FG·a + 255·(1−a)`. A dark or coloured fringe shows up here.
fn ring_error(img: &image::RgbImage, alpha: &image::GrayImage) -> (f64, u8, usize) {
    let (mut sum, mut n, mut max) = (0.0, 0usize, 0u8);
    for (x, y, p) in img.enumerate_pixels() {
        let a = alpha.get_pixel(x, y)[0] as f64 / 255.0;
        if a <= 0.0 || a >= 1.0 {
            continue;
        }
        for c in 0..3 {
            let ideal = FG[c] as f64 * a + 255.0 * (1.0 - a);
            let e = (p[c] as f64 - ideal).abs();
            sum += e;
            max = max.max(e.round() as u8);
        }
        n += 1;
    }
    (sum / (3 * n.max(1)) as f64, max, n)
}

#[test]
fn no_halo_against_white_when_scaled() {
    // Subject 400×200 → 2× on a 1000×1000 canvas (fill 85 % asks for
    // more, upscale stops at 2×); then a downscale to a thumbnail.
    let cut = packshot(600, 400, 300.0, 200.0, 200.0, 100.0);
    for keys in [
        "preset = \"amazon\"\ncanvas = \"1000x1000\"\nformat = \"png\"",
        "preset = \"thumbnail\"\nformat = \"png\"\nbackground = \"#FFFFFF\"",
    ] {
        let s = spec(keys);
        let img = decode(&finish(&cut, None, &s).expect("finish")).to_rgb8();
        let mut m = s.clone();
        m.mask = true;
        let alpha = decode(&finish(&cut, None, &m).expect("mask")).to_luma8();
        let (mean, max, n) = ring_error(&img, &alpha);
        assert!(n > 500, "a real edge ring: {n} pixels");
        // Measured: mean 0.48, max 20 (Lanczos3 overshoot just inside a hard
        // edge, lighter not darker); a straight resize gives mean 4.6, max 39.
        assert!(
            mean < 1.0 && max < 25,
            "{keys}: edge error mean {mean:.2}, max {max}"
        );
    }
}

#[test]
fn a_straight_resize_would_show_the_halo_the_ring_test_catches() {
    // Same scene, resized without premultiplying: the transparent green
    // leaks into the edge and the ring error shows it.
    let cut = packshot(600, 400, 300.0, 200.0, 200.0, 100.0);
    let src = fast_image_resize::images::Image::from_vec_u8(
        600,
        400,
        cut.clone().into_raw(),
        fast_image_resize::PixelType::U8x4,
    )
    .expect("image");
    let mut dst =
        fast_image_resize::images::Image::new(1200, 800, fast_image_resize::PixelType::U8x4);
    let opts = fast_image_resize::ResizeOptions::new().use_alpha(false);
    fast_image_resize::Resizer::new()
        .resize(&src, &mut dst, &opts)
        .expect("resize");
    let scaled = RgbaImage::from_raw(1200, 800, dst.into_vec()).expect("buffer");
    let alpha =
        image::GrayImage::from_fn(1200, 800, |x, y| image::Luma([scaled.get_pixel(x, y)[3]]));
    let placed = frame::Rect {
        x: 0,
        y: 0,
        w: 1200,
        h: 800,
    };
    let l = frame::Layout {
        canvas: (1200, 800),
        source: placed,
        placed,
    };
    let img =
        DynamicImage::ImageRgba8(compose::compose(&scaled, &l, Some([255; 4]), false)).to_rgb8();
    let (mean, max, _) = ring_error(&img, &alpha);
    assert!(
        mean > 3.0 && max > 30,
        "the metric must see a straight resize: {mean:.2} {max}"
    );
}

#[test]
fn shadow_only_when_asked() {
    let cut = packshot(600, 400, 300.0, 200.0, 200.0, 100.0);
    let base =
        "preset = \"ebay\"\nformat = \"png\"\nposition = \"bottom\"\nmargin = \"0 0 100px 0\"";
    let plain = decode(&finish(&cut, None, &spec(base)).expect("finish")).to_rgb8();
    let with = format!("{base}\nshadow = \"soft\"");
    let shadowed = decode(&finish(&cut, None, &spec(&with)).expect("finish")).to_rgb8();
    let b = non_white_box(&plain);
    let below = b.y + b.h + 2;
    assert_eq!(plain.get_pixel(800, below).0, [255, 255, 255]);
    let s = shadowed.get_pixel(800, below).0;
    assert!(s[0] < 230, "a shadow under the subject: {s:?}");
    let far = shadowed.get_pixel(800, below + 60).0;
    assert_eq!(far, [255, 255, 255], "the shadow is a contact shadow");
    assert_eq!(shadowed.get_pixel(10, 10).0, [255, 255, 255]);
}

fn p3() -> Vec<u8> {
    moxcms::ColorProfile::new_display_p3()
        .encode()
        .expect("profile")
}

#[test]
fn marketplace_outputs_are_srgb_others_keep_the_profile() {
    let cut = packshot(300, 200, 150.0, 100.0, 100.0, 50.0);
    let icc = p3();
    let amazon = finish(&cut, Some(&icc), &spec("preset = \"amazon\"")).expect("finish");
    assert_eq!(amazon.icc, IccOutcome::ConvertedToSrgb);
    let plain = finish(&cut, None, &spec("preset = \"amazon\"")).expect("finish");
    let (a, p) = (decode(&amazon).to_rgb8(), decode(&plain).to_rgb8());
    // P3 red is more saturated than sRGB red: converted pixels differ.
    let (pa, pp) = (a.get_pixel(1000, 1000).0, p.get_pixel(1000, 1000).0);
    assert!(pa[0] > pp[0] + 5 || pa[1] < pp[1], "{pa:?} vs {pp:?}");
    assert_eq!(a.get_pixel(5, 5).0, [255, 255, 255], "white stays exact");
    let mut d = image::ImageReader::new(std::io::Cursor::new(&amazon.bytes))
        .with_guessed_format()
        .expect("sniff")
        .into_decoder()
        .expect("decoder");
    use image::ImageDecoder;
    assert_eq!(
        d.icc_profile().expect("icc"),
        None,
        "sRGB output carries no profile"
    );
    let sq = finish(&cut, Some(&icc), &spec("preset = \"square\"")).expect("finish");
    assert_eq!(sq.icc, IccOutcome::Kept);
    let bad = finish(&cut, Some(b"junk"), &spec("preset = \"amazon\"")).expect("finish");
    assert_eq!(bad.icc, IccOutcome::Unusable);
}

#[test]
fn three_outputs_of_one_inbox() {
    let raw: Vec<RawOutput> = ["preset = \"amazon\"", "", "preset = \"thumbnail\""]
        .iter()
        .map(|t| toml::from_str(t).expect("toml"))
        .collect();
    let specs = check_outputs(&raw).expect("valid");
    let cut = packshot(400, 300, 200.0, 150.0, 120.0, 90.0);
    let rel = Path::new("shoes/red/shoe.jpg");
    let got: Vec<(PathBuf, u32, u32)> = specs
        .iter()
        .map(|s| {
            let f = finish(&cut, None, s).expect("finish");
            (s.relative_path(rel), f.width, f.height)
        })
        .collect();
    assert_eq!(
        got,
        [
            (PathBuf::from("shoes/red/shoe.jpg"), 2000, 2000),
            (PathBuf::from("shoes/red/shoe-output2.png"), 400, 300),
            (PathBuf::from("shoes/red/shoe-thumbnail.webp"), 400, 400),
        ]
    );
    let mut s = specs[0].clone();
    s.folder = Some("amazon".into());
    assert_eq!(
        s.relative_path(Path::new("shoe.jpg")),
        PathBuf::from("amazon/shoe.jpg")
    );
}

#[test]
fn empty_cut_out_is_a_clear_error_only_when_cropping() {
    let empty = RgbaImage::new(64, 64);
    let e = finish(&empty, None, &spec("crop = \"subject\"")).expect_err("nothing to crop");
    assert_eq!(e.code(), "finish-empty-subject");
    assert!(e.to_string().contains("alpha_threshold"), "{e}");
    finish(&empty, None, &spec("")).expect("no crop: an empty picture is still a picture");
}
