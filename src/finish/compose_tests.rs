//! Tests for `compose`: the over operator, premultiplied resizing, the
//! shadow and the mask.

use super::*;

fn layout(canvas: (u32, u32), source: Rect, placed: Rect) -> Layout {
    Layout {
        canvas,
        source,
        placed,
    }
}

/// Float reference for straight-alpha `src over dst`.
fn over_ref(s: [u8; 4], d: [u8; 4]) -> [f64; 4] {
    let a = s[3] as f64 / 255.0;
    let da = d[3] as f64 / 255.0;
    let oa = a + da * (1.0 - a);
    let mut out = [0.0; 4];
    for c in 0..3 {
        out[c] = if oa == 0.0 {
            0.0
        } else {
            (s[c] as f64 * a + d[c] as f64 * da * (1.0 - a)) / oa
        };
    }
    out[3] = oa * 255.0;
    out
}

#[test]
fn over_is_exact_where_it_must_be_and_close_elsewhere() {
    let values = [0u8, 1, 7, 64, 127, 128, 200, 254, 255];
    for &a in &values {
        for &da in &values {
            for &(f, b) in &[(0u8, 255u8), (255, 0), (200, 30), (13, 13)] {
                let s = [f, 255 - f, f / 2, a];
                let d = [b, b / 3, 255 - b, da];
                let got = over(s, d);
                if a == 0 {
                    assert_eq!(got, d, "a = 0 leaves the background exactly");
                }
                if a == 255 {
                    assert_eq!(got, s);
                }
                if da == 0 && a > 0 {
                    assert_eq!(&got[..3], &s[..3], "over nothing keeps the colour");
                }
                let want = over_ref(s, d);
                for c in 0..4 {
                    if c < 3 && want[3] == 0.0 {
                        continue;
                    }
                    let diff = (got[c] as f64 - want[c]).abs();
                    assert!(diff <= 0.5 + 1e-9, "{s:?} over {d:?}: {got:?} vs {want:?}");
                }
            }
        }
    }
}

#[test]
fn resizing_is_premultiplied_no_colour_bleeds_from_transparent_pixels() {
    // Left half: opaque red; right half: transparent but bright green.
    let img = RgbaImage::from_fn(64, 32, |x, _| {
        if x < 32 {
            image::Rgba([200, 0, 0, 255])
        } else {
            image::Rgba([0, 255, 0, 0])
        }
    });
    let full = Rect {
        x: 0,
        y: 0,
        w: 64,
        h: 32,
    };
    for size in [(16, 8), (128, 64), (50, 25)] {
        let placed = Rect {
            x: 0,
            y: 0,
            w: size.0,
            h: size.1,
        };
        let out = scaled_content(&img, &layout(size, full, placed)).expect("resize");
        assert_eq!(out.dimensions(), size);
        for p in out.pixels() {
            if p[3] >= 8 {
                assert!(
                    p[1] <= 2,
                    "green bled into a visible pixel: {p:?} at {size:?}"
                );
            }
        }
    }
}

#[test]
fn unscaled_content_is_an_exact_copy_of_the_source_rect() {
    let img = RgbaImage::from_fn(20, 10, |x, y| {
        image::Rgba([x as u8, y as u8, 7, (x * 10) as u8])
    });
    let src = Rect {
        x: 3,
        y: 2,
        w: 5,
        h: 4,
    };
    let out = scaled_content(
        &img,
        &layout(
            (5, 4),
            src,
            Rect {
                x: 0,
                y: 0,
                w: 5,
                h: 4,
            },
        ),
    )
    .expect("copy");
    for (x, y, p) in out.enumerate_pixels() {
        assert_eq!(p, img.get_pixel(x + 3, y + 2));
    }
}

fn blob(w: u32, h: u32) -> RgbaImage {
    // Opaque blue box with a soft (alpha 128) one-pixel rim.
    RgbaImage::from_fn(w, h, |x, y| {
        let rim = x == 0 || y == 0 || x == w - 1 || y == h - 1;
        image::Rgba([10, 20, 200, if rim { 128 } else { 255 }])
    })
}

#[test]
fn compose_places_content_over_the_background() {
    let content = blob(10, 6);
    let l = layout(
        (30, 20),
        Rect {
            x: 0,
            y: 0,
            w: 10,
            h: 6,
        },
        Rect {
            x: 5,
            y: 7,
            w: 10,
            h: 6,
        },
    );
    let out = compose(&content, &l, Some([255, 255, 255, 255]), false);
    assert_eq!(out.dimensions(), (30, 20));
    for (x, y, p) in out.enumerate_pixels() {
        let inside = (5..15).contains(&x) && (7..13).contains(&y);
        if !inside {
            assert_eq!(p.0, [255, 255, 255, 255], "background at {x},{y}");
        }
    }
    assert_eq!(out.get_pixel(8, 9).0, [10, 20, 200, 255]);
    // Rim: fg·a + bg·(1−a) with a = 128/255.
    let mix = |f: u32| ((f * 128 + 255 * 127 + 127) / 255) as u8;
    assert_eq!(out.get_pixel(5, 7).0, [mix(10), mix(20), mix(200), 255]);
    // Transparent background: the content exactly, zero elsewhere.
    let out = compose(&content, &l, None, false);
    assert_eq!(out.get_pixel(5, 7).0, [10, 20, 200, 128]);
    assert_eq!(out.get_pixel(0, 0).0, [0, 0, 0, 0]);
}

#[test]
fn shadow_only_when_asked_and_only_near_the_bottom() {
    let content = blob(100, 60);
    let placed = Rect {
        x: 50,
        y: 40,
        w: 100,
        h: 60,
    };
    let l = layout(
        (200, 140),
        Rect {
            x: 0,
            y: 0,
            w: 100,
            h: 60,
        },
        placed,
    );
    let white = Some([255, 255, 255, 255]);
    let plain = compose(&content, &l, white, false);
    let shadowed = compose(&content, &l, white, true);
    // Just under the subject's bottom edge, middle: darker only with shadow.
    assert_eq!(plain.get_pixel(100, 101).0, [255, 255, 255, 255]);
    let s = shadowed.get_pixel(100, 101).0;
    assert!(
        s[0] < 235 && s[0] == s[1] && s[1] == s[2],
        "shadow is grey: {s:?}"
    );
    // The subject itself is unchanged (opaque pixels cover the shadow).
    assert_eq!(shadowed.get_pixel(100, 70), plain.get_pixel(100, 70));
    // Far from the bottom edge, the background is untouched.
    for (x, y, p) in shadowed.enumerate_pixels() {
        let near = y + 6 >= 100 && y <= 106 && x + 10 >= 50 && x <= 160;
        let inside = (50..150).contains(&x) && (40..100).contains(&y);
        if !near && !inside {
            assert_eq!(p.0, [255, 255, 255, 255], "untouched at {x},{y}");
        }
    }
    // On a transparent canvas the shadow is translucent black.
    let t = compose(&content, &l, None, true).get_pixel(100, 101).0;
    assert!(t[..3] == [0, 0, 0] && t[3] > 20, "{t:?}");
}

#[test]
fn mask_is_the_alpha_at_its_place() {
    let content = blob(10, 6);
    let l = layout(
        (30, 20),
        Rect {
            x: 0,
            y: 0,
            w: 10,
            h: 6,
        },
        Rect {
            x: 5,
            y: 7,
            w: 10,
            h: 6,
        },
    );
    let m = mask(&content, &l);
    for (x, y, v) in m.enumerate_pixels() {
        let inside = (5..15).contains(&x) && (7..13).contains(&y);
        let want = if inside {
            content.get_pixel(x - 5, y - 7)[3]
        } else {
            0
        };
        assert_eq!(v[0], want, "at {x},{y}");
    }
}

#[test]
fn box_blur_keeps_the_sum_away_from_the_ends() {
    let mut v = vec![0.0; 21];
    v[10] = 1.0;
    let b = box_blur(&v, 2);
    assert!((b.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    assert_eq!(b[7], 0.0);
    assert!((b[8] - 0.2).abs() < 1e-12 && (b[12] - 0.2).abs() < 1e-12);
}
