//! The generated packshot set with exact alpha: each scene is rendered with
//! supersampling, so the true alpha of every pixel is the fraction of its
//! samples that fall on the product; noise and JPEG are added after. The
//! cut-out's alpha is compared with it as a soft IoU (Σ min / Σ max).
//!
//! `cargo test --release --lib engine::backdrop::tests::generated -- --nocapture`
//! prints the table.

use super::*;

/// A scene: the sRGB colour at a continuous position and whether it is product.
type Scene = Box<dyn Fn(f32, f32) -> ([f32; 3], bool)>;

/// Renders `scene` (`ss`×`ss` samples per pixel) with noise `sigma` and an
/// optional JPEG round trip; returns the picture and the exact alpha (0..=1).
fn render_exact(
    (w, h): (u32, u32),
    ss: u32,
    sigma: f32,
    jpeg: Option<u8>,
    scene: &Scene,
) -> (RgbaImage, Vec<f32>) {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut img = RgbaImage::new(w, h);
    let mut alpha = vec![0f32; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            let (mut acc, mut inside) = ([0f32; 3], 0u32);
            for j in 0..ss {
                for i in 0..ss {
                    let (c, obj) = scene(
                        x as f32 + (i as f32 + 0.5) / ss as f32,
                        y as f32 + (j as f32 + 0.5) / ss as f32,
                    );
                    (0..3).for_each(|k| acc[k] += c[k]);
                    inside += u32::from(obj);
                }
            }
            alpha[(y * w + x) as usize] = inside as f32 / (ss * ss) as f32;
            let p = acc.map(|a| {
                (a / (ss * ss) as f32 + sigma * rng.gauss())
                    .round()
                    .clamp(0.0, 255.0) as u8
            });
            img.put_pixel(x, y, Rgba([p[0], p[1], p[2], 255]));
        }
    }
    let img = match jpeg {
        Some(q) => jpeg_roundtrip(&img, q),
        None => img,
    };
    (img, alpha)
}

/// Soft IoU of the cut-out's alpha against the exact one.
fn soft_iou(out: &RgbaImage, truth: &[f32]) -> f32 {
    let (mut inter, mut union) = (0f64, 0f64);
    for (p, &t) in out.pixels().zip(truth) {
        let a = f64::from(p.0[3]) / 255.0;
        inter += a.min(f64::from(t));
        union += a.max(f64::from(t));
    }
    if union == 0.0 {
        1.0
    } else {
        (inter / union) as f32
    }
}

/// A soft contact shadow: an elliptical darkening of `depth` centred at `c`.
fn shadow(x: f32, y: f32, c: (f32, f32), r: (f32, f32), depth: f32) -> f32 {
    1.0 - depth * (-1.5 * ellipse_r2(x, y, c, r)).exp()
}

const BACKDROP: [f32; 3] = [250.0, 250.0, 248.0];

/// The dark shoe of the packshot tests, on white with its soft shadow.
fn dark_shoe(wf: f32, hf: f32) -> Scene {
    Box::new(move |x, y| {
        let sh = shadow(x, y, (0.5 * wf, 0.75 * hf), (0.36 * wf, 0.07 * hf), 0.28);
        let c = scale(BACKDROP, light(wf, hf, x, y) * sh);
        let (cx, cy, hw, hh) = (0.5 * wf, 0.55 * hf, 0.27 * wf, 0.16 * hf);
        if in_rounded_rect(x, y, (cx, cy), (hw, hh), 0.09 * hf) {
            return (
                scale([130.0, 22.0, 28.0], 1.0 - 0.2 * (y / hf - 0.39) / 0.32),
                true,
            );
        }
        (c, false)
    })
}

/// A navy sneaker upper on a white sole, on white, with a contact shadow under the sole.
fn white_sole(wf: f32, hf: f32) -> Scene {
    Box::new(move |x, y| {
        let sh = shadow(x, y, (0.5 * wf, 0.72 * hf), (0.34 * wf, 0.035 * hf), 0.35);
        let c = scale(BACKDROP, light(wf, hf, x, y) * sh);
        let upper = in_rounded_rect(
            x,
            y,
            (0.52 * wf, 0.47 * hf),
            (0.26 * wf, 0.15 * hf),
            0.1 * hf,
        );
        if upper && y < 0.6 * hf {
            return (
                scale([38.0, 48.0, 92.0], 1.0 - 0.15 * (y / hf - 0.32)),
                true,
            );
        }
        let (cx, half) = (0.5 * wf, 0.3 * wf);
        if in_rounded_rect(x, y, (cx, 0.65 * hf), (half, 0.05 * hf), 0.03 * hf) {
            // Lit from above: the sole darkens towards its lower edge and its ends.
            let v = (y / hf - 0.6) / 0.1;
            let u = (x - cx) / half;
            let shade = 1.0 - 0.12 * v * v - 0.06 * u.powi(4);
            return (scale([236.0, 236.0, 233.0], shade), true);
        }
        (c, false)
    })
}

/// A white box in three-quarter view on white: lit top, front and a darker side.
fn white_box(wf: f32, hf: f32) -> Scene {
    Box::new(move |x, y| {
        let sh = shadow(x, y, (0.53 * wf, 0.78 * hf), (0.3 * wf, 0.04 * hf), 0.3);
        let c = scale(BACKDROP, light(wf, hf, x, y) * sh);
        let (x0, x1, y0, y1) = (0.3 * wf, 0.66 * wf, 0.38 * hf, 0.78 * hf);
        let depth = (0.08 * wf, 0.08 * hf);
        let (u, v) = ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0));
        if (0.0..1.0).contains(&u) && (0.0..1.0).contains(&v) {
            return (scale([228.0, 228.0, 226.0], 1.0 - 0.04 * v), true);
        }
        // Top face: a parallelogram above the front, receding up and right.
        let t = (y0 - y) / depth.1;
        if (0.0..1.0).contains(&t) && x >= x0 + t * depth.0 && x < x1 + t * depth.0 {
            return ([233.0, 233.0, 231.0], true);
        }
        // Side face: right of the front, receding up.
        let s = (x - x1) / depth.0;
        if (0.0..1.0).contains(&s) && y < y1 - s * depth.1 && y >= y0 - s * depth.1 {
            return (scale([208.0, 208.0, 206.0], 1.0 - 0.04 * s), true);
        }
        (c, false)
    })
}

/// A dark green bottle with a white label across its full width, so the label's
/// ends are the product's outline against the white backdrop.
fn label_at_edge(wf: f32, hf: f32) -> Scene {
    Box::new(move |x, y| {
        let sh = shadow(x, y, (0.5 * wf, 0.86 * hf), (0.16 * wf, 0.03 * hf), 0.3);
        let c = scale(BACKDROP, light(wf, hf, x, y) * sh);
        let (cx, half) = (0.5 * wf, 0.12 * wf);
        if !in_rounded_rect(x, y, (cx, 0.52 * hf), (half, 0.34 * hf), 0.05 * hf) {
            return (c, false);
        }
        // A cylinder: shading falls off towards both sides.
        let u = ((x - cx) / half).clamp(-1.0, 1.0);
        let shade = 1.0 - 0.16 * u * u;
        if (0.42 * hf..0.64 * hf).contains(&y) {
            (scale([246.0, 245.0, 240.0], shade), true)
        } else {
            (scale([30.0, 80.0, 45.0], shade), true)
        }
    })
}

/// A light grey block on white (the grey-object case of the packshot tests).
fn light_grey_block(wf: f32, hf: f32) -> Scene {
    Box::new(move |x, y| {
        let sh = shadow(x, y, (0.5 * wf, 0.74 * hf), (0.3 * wf, 0.05 * hf), 0.25);
        let c = scale(BACKDROP, light(wf, hf, x, y) * sh);
        if in_rounded_rect(
            x,
            y,
            (0.5 * wf, 0.5 * hf),
            (0.22 * wf, 0.22 * hf),
            0.03 * hf,
        ) {
            return ([200.0, 200.0, 198.0], true);
        }
        (c, false)
    })
}

/// An orange ball on a blue backdrop.
fn orange_ball(wf: f32, hf: f32) -> Scene {
    Box::new(move |x, y| {
        let sh = shadow(x, y, (0.5 * wf, 0.78 * hf), (0.22 * wf, 0.04 * hf), 0.3);
        let c = scale([40.0, 90.0, 200.0], light(wf, hf, x, y) * sh);
        let r2 = ellipse_r2(x, y, (0.5 * wf, 0.5 * hf), (0.25 * hf, 0.25 * hf));
        if r2 < 1.0 {
            return (scale([240.0, 130.0, 30.0], 1.0 - 0.25 * r2), true);
        }
        (c, false)
    })
}

/// Every case of the set: name and scene.
fn cases(wf: f32, hf: f32) -> Vec<(&'static str, Scene)> {
    vec![
        ("dark shoe on white", dark_shoe(wf, hf)),
        ("light grey block on white", light_grey_block(wf, hf)),
        ("orange ball on blue", orange_ball(wf, hf)),
        ("white sole on white", white_sole(wf, hf)),
        ("white box on white", white_box(wf, hf)),
        ("white label at the edge", label_at_edge(wf, hf)),
    ]
}

#[test]
fn generated_set_iou() {
    let (w, h) = (480u32, 360u32);
    let mut failed = Vec::new();
    println!("{:<28} {:>7}", "scene", "IoU");
    for (name, scene) in cases(w as f32, h as f32) {
        let (img, truth) = render_exact((w, h), 4, 2.0, Some(90), &scene);
        let iou = match cut_out(&img, &BackdropOptions::default()) {
            Ok(out) => soft_iou(&out, &truth),
            Err(_) => 0.0,
        };
        println!("{name:<28} {iou:>7.4}");
        if iou < 0.95 {
            failed.push(format!("{name}: {iou:.4}"));
        }
    }
    assert!(failed.is_empty(), "IoU below 0.95: {failed:?}");
}
