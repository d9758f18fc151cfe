//! PACKSHOTS

use super::*;

#[test]
fn dark_shoe_on_white_with_shadow_gradient_and_jpeg() {
    let img = shoe_scene(480, 360);
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.3, 0.45, 0.7, 0.65), 250, "shoe interior");
    // The soft shadow below the shoe (the shoe ends at 0.71 of the height).
    let shadow = frac(&out, 0.3, 0.735, 0.7, 0.8);
    let a = alphas(&out, shadow);
    let clear = a.iter().filter(|&&v| v < 64).count() as f32 / a.len() as f32;
    assert!(clear > 0.97, "shadow only {clear} transparent");
    assert!(mean_alpha(&out, shadow) < 16.0);
    // Anti-aliased edge.
    let edge = edge_pixels(&out, 10, 245);
    assert!(
        edge.len() > 150,
        "only {} fractional edge pixels",
        edge.len()
    );
    // No white fringe: half-transparent edge pixels carry the shoe colour.
    let mid = edge_pixels(&out, 40, 230);
    let m = mean_rgb(&mid);
    assert!(
        m[1] < 60.0 && m[2] < 65.0,
        "edge colour {m:?} pulled toward white"
    );
    let worst = mid.iter().map(|p| p[1]).max().unwrap_or(0);
    assert!(worst < 150, "an edge pixel has green {worst}");
    // Fully transparent pixels carry no backdrop tint (nearest object colour).
    let clear_px: Vec<[u8; 4]> = out.pixels().filter(|p| p.0[3] == 0).map(|p| p.0).collect();
    let t = mean_rgb(&clear_px);
    assert!(t[1] < 80.0, "transparent pixels are tinted {t:?}");
}

#[test]
fn white_mug_with_handle_hole_on_light_grey() {
    let (w, h) = (480u32, 360u32);
    let (wf, hf) = (w as f32, h as f32);
    let (hx, hy) = (0.58 * wf, 0.5 * hf);
    let (ri, ro) = (0.09 * hf, 0.16 * hf);
    let img = draw(w, h, 4, 2.0, Some(90), move |x, y| {
        let l = light(wf, hf, x, y);
        let sh = 1.0
            - 0.22 * (-1.5 * ellipse_r2(x, y, (0.47 * wf, 0.8 * hf), (0.2 * wf, 0.05 * hf))).exp();
        let mut c = scale([200.0, 200.0, 202.0], l * sh);
        let body = in_rounded_rect(
            x,
            y,
            (0.44 * wf, 0.51 * hf),
            (0.14 * wf, 0.27 * hf),
            0.05 * hf,
        );
        let d = ((x - hx).powi(2) + (y - hy).powi(2)).sqrt();
        let handle = x > hx - 1.0 && d > ri && d < ro;
        if body || handle {
            let t = ((x - 0.44 * wf) / (0.14 * wf)).clamp(-1.0, 1.6);
            c = scale([251.0, 250.0, 247.0], 1.0 - 0.05 * t * t);
        }
        c
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.36, 0.35, 0.52, 0.7), 250, "mug body");
    let hole = Rect {
        x0: (hx + 8.0) as u32,
        y0: (hy - 10.0) as u32,
        x1: (hx + ri - 6.0) as u32,
        y1: (hy + 10.0) as u32,
    };
    assert_all_below(&out, hole, 32, "handle hole");
    let ring = (hx + 0.5 * (ri + ro)) as u32;
    let a = out.get_pixel(ring, hy as u32).0[3];
    assert!(a > 240, "handle itself has alpha {a}");
    assert!(!edge_pixels(&out, 10, 245).is_empty());
}

#[test]
fn black_object_on_mid_grey_without_fringe() {
    let (w, h) = (400u32, 300u32);
    let (wf, hf) = (w as f32, h as f32);
    let obj = [18.0, 18.0, 20.0];
    let img = draw(w, h, 4, 2.5, Some(85), move |x, y| {
        if ellipse_r2(x, y, (0.5 * wf, 0.5 * hf), (0.25 * wf, 0.32 * hf)) < 1.0 {
            obj
        } else {
            scale([128.0, 128.0, 131.0], light(wf, hf, x, y))
        }
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.4, 0.4, 0.6, 0.6), 250, "object interior");
    let edge = edge_pixels(&out, 10, 245);
    assert!(
        edge.len() > 100,
        "only {} fractional edge pixels",
        edge.len()
    );
    let m = mean_rgb(&edge_pixels(&out, 40, 230));
    assert!(
        m.iter().all(|&c| c < 45.0),
        "edge colour {m:?} pulled toward grey"
    );
}

#[test]
fn white_printed_label_on_object_on_white_stays_opaque() {
    let (w, h) = (480u32, 360u32);
    let (wf, hf) = (w as f32, h as f32);
    let img = draw(w, h, 4, 2.0, Some(90), move |x, y| {
        let back = scale([245.0, 245.0, 245.0], light(wf, hf, x, y));
        let (u, v) = (x / wf, y / hf);
        if !in_rounded_rect(x, y, (0.5 * wf, 0.5 * hf), (0.3 * wf, 0.3 * hf), 0.04 * hf) {
            return back;
        }
        if (u - 0.5).abs() < 0.16 && (v - 0.5).abs() < 0.12 {
            // The label is the very colour of the backdrop, with three printed lines.
            let line = ((v - 0.41) / 0.06).floor();
            let in_line = (0.0..3.0).contains(&line) && ((v - 0.41) / 0.06).fract() < 0.45;
            let word = ((u - 0.36) / 0.05).fract() < 0.8 && u > 0.36 && u < 0.64;
            return if in_line && word {
                [60.0, 60.0, 70.0]
            } else {
                back
            };
        }
        [28.0, 38.0, 92.0]
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.35, 0.39, 0.65, 0.61), 250, "label");
    assert_all_at_least(&out, frac(&out, 0.23, 0.25, 0.3, 0.75), 250, "object");
}

#[test]
fn orange_ball_on_blue_backdrop_with_shadow() {
    let (w, h) = (400u32, 300u32);
    let (wf, hf) = (w as f32, h as f32);
    let img = draw(w, h, 4, 2.0, Some(88), move |x, y| {
        let sh = 1.0
            - 0.3 * (-1.2 * ellipse_r2(x, y, (0.55 * wf, 0.8 * hf), (0.3 * wf, 0.06 * hf))).exp();
        if ellipse_r2(x, y, (0.5 * wf, 0.5 * hf), (0.25 * hf, 0.25 * hf)) < 1.0 {
            [235.0, 150.0, 40.0]
        } else {
            scale([35.0, 85.0, 190.0], light(wf, hf, x, y) * sh)
        }
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.45, 0.43, 0.55, 0.57), 250, "ball");
    assert_all_below(&out, frac(&out, 0.6, 0.78, 0.8, 0.84), 64, "shadow on blue");
    let m = mean_rgb(&edge_pixels(&out, 40, 230));
    assert!(
        m[2] < 90.0 && m[0] > 180.0,
        "edge colour {m:?} pulled toward blue"
    );
}

#[test]
fn light_grey_object_on_white_is_not_taken_for_a_shadow() {
    // Only darker than the backdrop, like its own shadow, but with sharp edges.
    let (w, h) = (480u32, 360u32);
    let (wf, hf) = (w as f32, h as f32);
    let img = draw(w, h, 4, 2.0, Some(88), move |x, y| {
        let l = light(wf, hf, x, y);
        let sh = 1.0
            - 0.25 * (-1.5 * ellipse_r2(x, y, (0.5 * wf, 0.76 * hf), (0.34 * wf, 0.07 * hf))).exp();
        if in_rounded_rect(
            x,
            y,
            (0.5 * wf, 0.5 * hf),
            (0.25 * wf, 0.22 * hf),
            0.05 * hf,
        ) {
            [196.0, 196.0, 198.0]
        } else {
            scale([250.0, 250.0, 249.0], l * sh)
        }
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.28, 0.31, 0.72, 0.69), 250, "grey object");
    let below = frac(&out, 0.3, 0.74, 0.7, 0.82);
    assert!(
        mean_alpha(&out, below) < 64.0,
        "shadow mean alpha {}",
        mean_alpha(&out, below)
    );
    assert!(edge_pixels(&out, 10, 245).len() > 100);
}

#[test]
fn product_cropped_by_the_frame_under_a_spotlight() {
    // A green bottle running off the bottom edge; a strong radial spotlight on grey.
    let (w, h) = (360u32, 480u32);
    let (wf, hf) = (w as f32, h as f32);
    let img = draw(w, h, 4, 2.5, Some(85), move |x, y| {
        let (u, v) = (x / wf - 0.5, y / hf - 0.45);
        let spot = 1.0 - 0.55 * (u * u + v * v);
        let bottle = (x - 0.5 * wf).abs() < 0.16 * wf && y > 0.35 * hf
            || ellipse_r2(x, y, (0.5 * wf, 0.35 * hf), (0.16 * wf, 0.1 * hf)) < 1.0
            || (x - 0.5 * wf).abs() < 0.05 * wf && y > 0.12 * hf;
        if bottle {
            scale(
                [30.0, 110.0, 60.0],
                0.8 + 0.3 * (1.0 - ((x / wf - 0.45) / 0.16).powi(2)).max(0.0),
            )
        } else {
            scale([190.0, 190.0, 192.0], spot)
        }
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(
        &out,
        frac(&out, 0.4, 0.5, 0.6, 1.0),
        250,
        "bottle down to the frame",
    );
    assert_all_at_least(&out, frac(&out, 0.47, 0.14, 0.53, 0.3), 250, "bottle neck");
    assert_all_below(
        &out,
        frac(&out, 0.0, 0.3, 0.25, 1.0),
        32,
        "left of the bottle",
    );
    assert_all_below(
        &out,
        frac(&out, 0.75, 0.3, 1.0, 1.0),
        32,
        "right of the bottle",
    );
}

#[test]
fn two_objects_are_kept_and_dust_specks_removed() {
    let (w, h) = (480u32, 320u32);
    let (wf, hf) = (w as f32, h as f32);
    let dust = [(40.0, 250.0), (420.0, 60.0), (300.0, 290.0), (90.0, 80.0)];
    let img = draw(w, h, 4, 2.0, Some(90), move |x, y| {
        let pair = ellipse_r2(x, y, (0.3 * wf, 0.5 * hf), (0.1 * wf, 0.2 * hf)) < 1.0
            || ellipse_r2(x, y, (0.7 * wf, 0.5 * hf), (0.1 * wf, 0.2 * hf)) < 1.0;
        let speck = dust
            .iter()
            .any(|&(dx, dy)| (x - dx).powi(2) + (y - dy).powi(2) < 2.0);
        if pair {
            [200.0, 160.0, 40.0]
        } else if speck {
            [90.0, 90.0, 90.0]
        } else {
            scale([246.0, 246.0, 246.0], light(wf, hf, x, y))
        }
    });
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.27, 0.4, 0.33, 0.6), 250, "left earring");
    assert_all_at_least(&out, frac(&out, 0.67, 0.4, 0.73, 0.6), 250, "right earring");
    for (x, y) in dust {
        let r = Rect {
            x0: x as u32 - 3,
            y0: y as u32 - 3,
            x1: x as u32 + 4,
            y1: y as u32 + 4,
        };
        assert_all_below(&out, r, 32, "dust speck");
    }
}

#[test]
fn downscaled_path_keeps_size_and_quality() {
    // 1600x1200 is worked on at 1024x768 and refined at full resolution.
    let img = shoe_scene(1600, 1200);
    let out = run(&img);
    assert_corners_clear(&out);
    assert_all_at_least(&out, frac(&out, 0.3, 0.45, 0.7, 0.65), 250, "shoe interior");
    assert!(mean_alpha(&out, frac(&out, 0.3, 0.735, 0.7, 0.8)) < 16.0);
    assert!(edge_pixels(&out, 10, 245).len() > 400);
    let m = mean_rgb(&edge_pixels(&out, 40, 230));
    assert!(m[1] < 60.0, "edge colour {m:?} pulled toward white");
}
