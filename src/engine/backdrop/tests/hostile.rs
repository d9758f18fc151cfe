//! HOSTILE

use super::*;

#[test]
fn tiny_pictures_are_too_small() {
    for (w, h) in [(0, 0), (7, 7), (7, 100), (100, 7), (1, 1)] {
        let img = RgbaImage::from_pixel(w, h, Rgba([10, 20, 30, 255]));
        match cut_out(&img, &BackdropOptions::default()) {
            Err(SegmentError::TooSmall { width, height }) => {
                assert_eq!((width, height), (w, h));
            }
            other => panic!("{w}x{h}: expected TooSmall, got {other:?}"),
        }
    }
    // 8x8 is accepted (whatever it finds).
    let mut img = RgbaImage::from_pixel(8, 8, Rgba([255, 255, 255, 255]));
    img.put_pixel(4, 4, Rgba([0, 0, 0, 255]));
    if let Ok(out) = cut_out(&img, &BackdropOptions::default()) {
        assert_eq!(out.dimensions(), (8, 8));
    }
}

#[test]
fn uniform_pictures_have_no_object() {
    let (wf, hf) = (320.0, 240.0);
    let grey = draw(320, 240, 1, 2.5, Some(80), move |x, y| {
        scale([180.0, 182.0, 185.0], light(wf, hf, x, y))
    });
    let white = RgbaImage::from_pixel(64, 48, Rgba([255, 255, 255, 255]));
    let black = RgbaImage::from_pixel(64, 48, Rgba([0, 0, 0, 255]));
    for img in [grey, white, black] {
        assert!(
            matches!(
                cut_out(&img, &BackdropOptions::default()),
                Err(SegmentError::NoObject)
            ),
            "a uniform picture must give NoObject"
        );
    }
}

#[test]
fn input_transparency_is_respected() {
    let mut img = shoe_scene(480, 360);
    for y in 0..360 {
        for x in 0..200 {
            img.get_pixel_mut(x, y).0[3] = 0;
        }
    }
    let out = run(&img);
    assert_all_below(
        &out,
        Rect {
            x0: 0,
            y0: 0,
            x1: 200,
            y1: 360,
        },
        1,
        "transparent input",
    );
    assert_all_at_least(&out, frac(&out, 0.5, 0.45, 0.7, 0.65), 250, "shoe interior");
    assert_corners_clear(&out);

    // Already cut out: returned as it is.
    let mut cut = RgbaImage::from_pixel(64, 64, Rgba([255, 255, 255, 0]));
    for y in 20..40 {
        for x in 20..40 {
            cut.put_pixel(x, y, Rgba([200, 10, 10, 255]));
        }
    }
    let out = run(&cut);
    assert_eq!(out.get_pixel(30, 30).0[3], 255);
    assert_eq!(out.get_pixel(5, 5).0[3], 0);

    // Fully transparent: nothing there.
    let empty = RgbaImage::from_pixel(64, 64, Rgba([0, 0, 0, 0]));
    assert!(matches!(
        cut_out(&empty, &BackdropOptions::default()),
        Err(SegmentError::NoObject)
    ));
}

#[test]
fn hostile_inputs_and_options_do_not_panic() {
    let mut rng = Rng(7);
    let noise = RgbaImage::from_fn(200, 150, |_, _| {
        let v = [0; 3].map(|_: u8| (rng.uniform() * 255.0) as u8);
        Rgba([v[0], v[1], v[2], (rng.uniform() * 255.0) as u8])
    });
    let checker = RgbaImage::from_fn(97, 61, |x, y| {
        if (x + y) % 2 == 0 {
            Rgba([0, 0, 0, 255])
        } else {
            Rgba([255, 255, 255, 255])
        }
    });
    let strip = RgbaImage::from_fn(8, 3000, |_, y| {
        if (1400..1600).contains(&y) {
            Rgba([20, 20, 200, 255])
        } else {
            Rgba([250, 250, 250, 255])
        }
    });
    let wide = RgbaImage::from_fn(3000, 9, |x, _| {
        if (1400..1600).contains(&x) {
            Rgba([20, 20, 200, 255])
        } else {
            Rgba([250, 250, 250, 255])
        }
    });
    let odd = shoe_scene(1031, 13);
    let weird = BackdropOptions {
        working_max_side: 0,
        busy_working_max_side: u32::MAX,
        border_fraction: f32::NAN,
        max_backdrop_noise: f32::INFINITY,
        min_backdrop_share: -3.0,
        low_threshold_noise: f32::NAN,
        high_threshold_noise: -1.0,
        min_low_threshold: 0.0,
        min_high_threshold: f32::NEG_INFINITY,
        shadow_tolerance: 5.0,
        shadow_weight: f32::NAN,
        min_object_fraction: 2.0,
        min_object_relative: f32::NAN,
        min_hole_fraction: -1.0,
        decontaminate: false,
    };
    for img in [&noise, &checker, &strip, &wide, &odd] {
        for opts in [BackdropOptions::default(), weird.clone()] {
            if let Ok(out) = cut_out(img, &opts) {
                assert_eq!(out.dimensions(), img.dimensions());
            }
        }
    }
    // The thin strip's blue band is found.
    let out = run(&strip);
    assert_eq!(out.get_pixel(4, 1500).0[3], 255);
    assert_eq!(out.get_pixel(4, 100).0[3], 0);
}

#[test]
fn random_small_pictures_never_panic() {
    let mut rng = Rng(0xDEAD_BEEF_1234_5678);
    for round in 0..300 {
        let w = 8 + (rng.uniform() * 90.0) as u32;
        let h = 8 + (rng.uniform() * 90.0) as u32;
        let back = [0; 3].map(|_: u8| rng.uniform() * 255.0);
        let mut img = RgbaImage::from_pixel(
            w,
            h,
            Rgba([back[0] as u8, back[1] as u8, back[2] as u8, 255]),
        );
        for _ in 0..(rng.uniform() * 6.0) as usize {
            let c = [0; 4].map(|_: u8| (rng.uniform() * 255.0) as u8);
            let (x0, y0) = (
                (rng.uniform() * w as f32) as u32,
                (rng.uniform() * h as f32) as u32,
            );
            let (x1, y1) = (
                (rng.uniform() * w as f32) as u32,
                (rng.uniform() * h as f32) as u32,
            );
            for y in y0.min(y1)..y0.max(y1) {
                for x in x0.min(x1)..x0.max(x1) {
                    let a = if round % 3 == 0 { c[3] } else { 255 };
                    img.put_pixel(x, y, Rgba([c[0], c[1], c[2], a]));
                }
            }
        }
        let noise = rng.uniform() * 20.0;
        for p in img.pixels_mut() {
            for k in 0..3 {
                p.0[k] = (f32::from(p.0[k]) + noise * rng.gauss()).clamp(0.0, 255.0) as u8;
            }
        }
        if let Ok(out) = cut_out(&img, &BackdropOptions::default()) {
            assert_eq!(out.dimensions(), (w, h));
        }
    }
}
