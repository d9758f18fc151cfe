//! Framing geometry: where the subject goes on which canvas.
//!
//! Owns: the subject box (pixels with alpha ≥ threshold), and the layout
//! arithmetic — crop, scale (upscale capped at [`MAX_UPSCALE`]×), canvas
//! (none / square / WxH), `fill` along the limiting side, margins, position,
//! `max_size`. Rules, in order:
//! 1. content = the subject box (`crop = "subject"`) or the whole picture;
//! 2. fixed canvas: the content is scaled to fit inside the margins and, with
//!    `fill`, to take that share of the canvas along its limiting side
//!    (margins win when both apply); never above 1× without `upscale`,
//!    never above 2× with it;
//! 3. `none` / `square` canvas: the content stays at 1× and the canvas is
//!    grown around it: margins (shares are of the final canvas side) and,
//!    with `fill`, content side / fill (square: the longer side);
//! 4. `max_size` scales the whole result down (never up) to fit inside;
//! 5. the content is centred between the margins, or stands on the bottom
//!    margin (`position = "bottom"`).
//!
//! Must not: touch pixel values (only alpha is read, for the box).

use image::RgbaImage;

use super::spec::{split, Canvas, Crop, Margins, OutputSpec, Position, MAX_SIDE, MAX_UPSCALE};

/// A pixel rectangle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub w: u32,
    pub h: u32,
}

/// The result of the arithmetic: which source rectangle lands where.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub canvas: (u32, u32),
    /// The part of the cut-out that is shown.
    pub source: Rect,
    /// Where that part lands on the canvas (scaled to this size).
    pub placed: Rect,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FrameError {
    #[error("the cut-out has no pixel with alpha ≥ {threshold} (nothing to crop to); lower `alpha_threshold` or check the engine")]
    EmptySubject { threshold: u8 },
    #[error("the finished picture would be {width}x{height}, more than {MAX_SIDE} px on a side; lower `fill`/`margin` or set `max_size`")]
    TooLarge { width: u64, height: u64 },
    #[error("the margins leave no room for the subject on a {width}x{height} canvas")]
    NoRoom { width: u32, height: u32 },
}

/// The smallest box around the pixels with alpha ≥ `threshold`.
pub fn subject_box(img: &RgbaImage, threshold: u8) -> Option<Rect> {
    let (w, h) = img.dimensions();
    let (mut x0, mut y0, mut x1, mut y1) = (u32::MAX, u32::MAX, 0u32, 0u32);
    for (y, row) in img.as_raw().chunks_exact(w as usize * 4).enumerate() {
        let y = y as u32;
        let mut first = None;
        let mut last = 0;
        for (x, px) in row.chunks_exact(4).enumerate() {
            if px[3] >= threshold {
                first.get_or_insert(x as u32);
                last = x as u32;
            }
        }
        if let Some(first) = first {
            x0 = x0.min(first);
            x1 = x1.max(last);
            y0 = y0.min(y);
            y1 = y;
        }
    }
    (x0 <= x1 && h > 0).then(|| Rect {
        x: x0,
        y: y0,
        w: x1 - x0 + 1,
        h: y1 - y0 + 1,
    })
}

/// Per-side pixel sizes for a canvas of `w`×`h`, with pixel margins scaled by `k`.
fn resolve(m: &Margins, w: f64, h: f64, k: f64) -> [f64; 4] {
    let side = |l, full: f64| match l {
        super::spec::Length::Px(p) => p as f64 * k,
        super::spec::Length::Share(s) => s * full,
    };
    [
        side(m.top, h),
        side(m.right, w),
        side(m.bottom, h),
        side(m.left, w),
    ]
}

/// Lay out a `src_w`×`src_h` cut-out whose subject box is `subject`.
pub fn layout(
    src_w: u32,
    src_h: u32,
    subject: Option<Rect>,
    spec: &OutputSpec,
) -> Result<Layout, FrameError> {
    if src_w == 0 || src_h == 0 {
        return Err(FrameError::EmptySubject {
            threshold: spec.alpha_threshold,
        });
    }
    let source = match spec.crop {
        Crop::None => Rect {
            x: 0,
            y: 0,
            w: src_w,
            h: src_h,
        },
        Crop::Subject => subject.ok_or(FrameError::EmptySubject {
            threshold: spec.alpha_threshold,
        })?,
    };
    let (cw, ch) = (source.w as f64, source.h as f64);
    let (mut cv_w, mut cv_h, mut scale) = canvas_and_scale(cw, ch, spec)?;
    if cv_w > MAX_SIDE as f64 || cv_h > MAX_SIDE as f64 {
        return Err(FrameError::TooLarge {
            width: cv_w as u64,
            height: cv_h as u64,
        });
    }
    let mut k = 1.0;
    if let Some((mw, mh)) = spec.max_size {
        k = (mw as f64 / cv_w).min(mh as f64 / cv_h).min(1.0);
        cv_w = (cv_w * k).round().max(1.0);
        cv_h = (cv_h * k).round().max(1.0);
        scale *= k;
    }
    let [mt, mr, mb, ml] = resolve(&spec.margin, cv_w, cv_h, k);
    let w = (cw * scale).round().clamp(1.0, cv_w);
    let h = (ch * scale).round().clamp(1.0, cv_h);
    let x = (ml + (cv_w - ml - mr - w) / 2.0).round();
    let y = match spec.position {
        Position::Center => (mt + (cv_h - mt - mb - h) / 2.0).round(),
        Position::Bottom => (cv_h - mb - h).round(),
    };
    let placed = Rect {
        x: x.clamp(0.0, cv_w - w) as u32,
        y: y.clamp(0.0, cv_h - h) as u32,
        w: w as u32,
        h: h as u32,
    };
    Ok(Layout {
        canvas: (cv_w as u32, cv_h as u32),
        source,
        placed,
    })
}

/// The canvas size and the subject's scale for content of `cw`×`ch`
/// (before `max_size`): a fixed canvas scales the content to fit inside the
/// margins (and `fill`, up to the upscale cap); otherwise the canvas grows
/// around the content at scale 1.
fn canvas_and_scale(cw: f64, ch: f64, spec: &OutputSpec) -> Result<(f64, f64, f64), FrameError> {
    let (px_lr, sh_lr) = split(spec.margin.left, spec.margin.right);
    let (px_tb, sh_tb) = split(spec.margin.top, spec.margin.bottom);
    Ok(match spec.canvas {
        Canvas::Fixed { width, height } => {
            let (w, h) = (width as f64, height as f64);
            let avail_w = w - px_lr as f64 - sh_lr * w;
            let avail_h = h - px_tb as f64 - sh_tb * h;
            if avail_w < 1.0 || avail_h < 1.0 {
                return Err(FrameError::NoRoom { width, height });
            }
            let mut s = (avail_w / cw).min(avail_h / ch);
            if let Some(f) = spec.fill {
                s = s.min((f * w / cw).min(f * h / ch));
            }
            let cap = if spec.upscale { MAX_UPSCALE } else { 1.0 };
            (w, h, s.min(cap))
        }
        Canvas::None | Canvas::Square => {
            let mut need_w = (cw + px_lr as f64) / (1.0 - sh_lr);
            let mut need_h = (ch + px_tb as f64) / (1.0 - sh_tb);
            if let Some(f) = spec.fill {
                if spec.canvas == Canvas::Square {
                    let side = cw.max(ch) / f;
                    need_w = need_w.max(side);
                    need_h = need_h.max(side);
                } else {
                    need_w = need_w.max(cw / f);
                    need_h = need_h.max(ch / f);
                }
            }
            if spec.canvas == Canvas::Square {
                need_w = need_w.max(need_h);
                need_h = need_w;
            }
            // Round up so that the content always fits (1e-9: float noise).
            ((need_w - 1e-9).ceil(), (need_h - 1e-9).ceil(), 1.0)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::finish::spec::RawOutput;

    fn spec(toml_text: &str) -> OutputSpec {
        let raw: RawOutput = toml::from_str(toml_text).expect("toml");
        raw.check(1).expect("valid spec")
    }

    /// A transparent `w`×`h` picture with an opaque box at `r`.
    fn with_box(w: u32, h: u32, r: Rect) -> RgbaImage {
        RgbaImage::from_fn(w, h, |x, y| {
            let inside = x >= r.x && x < r.x + r.w && y >= r.y && y < r.y + r.h;
            image::Rgba([200, 10, 10, if inside { 255 } else { 0 }])
        })
    }

    const SUBJECT: Rect = Rect {
        x: 100,
        y: 50,
        w: 400,
        h: 200,
    };

    #[test]
    fn subject_box_uses_the_threshold() {
        let mut img = with_box(640, 480, SUBJECT);
        assert_eq!(subject_box(&img, 16), Some(SUBJECT));
        // A faint pixel outside: counted at threshold 5, not at 16.
        img.put_pixel(10, 400, image::Rgba([0, 0, 0, 10]));
        assert_eq!(subject_box(&img, 16), Some(SUBJECT));
        assert_eq!(
            subject_box(&img, 5),
            Some(Rect {
                x: 10,
                y: 50,
                w: 490,
                h: 351
            })
        );
        assert_eq!(
            subject_box(
                &with_box(
                    8,
                    8,
                    Rect {
                        x: 0,
                        y: 0,
                        w: 0,
                        h: 0
                    }
                ),
                1
            ),
            None
        );
        assert_eq!(
            subject_box(
                &with_box(
                    8,
                    8,
                    Rect {
                        x: 0,
                        y: 0,
                        w: 0,
                        h: 0
                    }
                ),
                0
            ),
            Some(Rect {
                x: 0,
                y: 0,
                w: 8,
                h: 8
            }),
            "threshold 0 takes every pixel"
        );
    }

    #[test]
    fn no_options_keeps_the_frame() {
        let l = layout(640, 480, Some(SUBJECT), &spec("")).expect("layout");
        assert_eq!(l.canvas, (640, 480));
        assert_eq!(
            l.placed,
            Rect {
                x: 0,
                y: 0,
                w: 640,
                h: 480
            }
        );
    }

    #[test]
    fn crop_subject_without_canvas_is_the_box() {
        let l = layout(640, 480, Some(SUBJECT), &spec("crop = \"subject\"")).expect("layout");
        assert_eq!(l.canvas, (400, 200));
        assert_eq!(l.source, SUBJECT);
        let l = layout(
            640,
            480,
            Some(SUBJECT),
            &spec("crop = \"subject\"\nmargin = \"10px 20px 30px 40px\""),
        )
        .expect("layout");
        assert_eq!(l.canvas, (460, 240));
        assert_eq!(
            l.placed,
            Rect {
                x: 40,
                y: 10,
                w: 400,
                h: 200
            }
        );
    }

    #[test]
    fn amazon_fills_85_percent_along_the_limiting_side() {
        let l = layout(640, 480, Some(SUBJECT), &spec("preset = \"amazon\"")).expect("layout");
        assert_eq!(l.canvas, (2000, 2000));
        // 400 wide is limiting: 0.85 × 2000 = 1700 → scale 4.25, capped at 2×.
        assert_eq!(
            l.placed,
            Rect {
                x: 600,
                y: 800,
                w: 800,
                h: 400
            }
        );
        // A larger subject reaches the fill exactly.
        let big = Rect {
            x: 0,
            y: 0,
            w: 2400,
            h: 1200,
        };
        let l = layout(3000, 2000, Some(big), &spec("preset = \"amazon\"")).expect("layout");
        assert_eq!(
            l.placed,
            Rect {
                x: 150,
                y: 575,
                w: 1700,
                h: 850
            }
        );
        // Without upscale the small one stays 1×.
        let l = layout(
            640,
            480,
            Some(SUBJECT),
            &spec("preset = \"amazon\"\nupscale = false"),
        )
        .expect("layout");
        assert_eq!(
            l.placed,
            Rect {
                x: 800,
                y: 900,
                w: 400,
                h: 200
            }
        );
    }

    #[test]
    fn fixed_canvas_margins_limit_the_scale() {
        // 5 % of 1000 = 50 px each side → 900 available; fill 100 % would be 1000.
        let s = spec("canvas = \"1000x1000\"\nmargin = \"5%\"\ncrop = \"subject\"");
        let big = Rect {
            x: 0,
            y: 0,
            w: 1800,
            h: 900,
        };
        let l = layout(2000, 1000, Some(big), &s).expect("layout");
        assert_eq!(
            l.placed,
            Rect {
                x: 50,
                y: 275,
                w: 900,
                h: 450
            }
        );
    }

    #[test]
    fn position_bottom_stands_on_the_bottom_margin() {
        let s = spec("canvas = \"1000x800\"\nmargin = \"40px\"\ncrop = \"subject\"\nposition = \"bottom\"\nupscale = false");
        let l = layout(640, 480, Some(SUBJECT), &s).expect("layout");
        assert_eq!(
            l.placed,
            Rect {
                x: 300,
                y: 800 - 40 - 200,
                w: 400,
                h: 200
            }
        );
    }

    #[test]
    fn square_canvas_grows_around_the_content() {
        let l = layout(
            640,
            480,
            Some(SUBJECT),
            &spec("crop = \"subject\"\ncanvas = \"square\""),
        )
        .expect("layout");
        assert_eq!(l.canvas, (400, 400));
        assert_eq!(
            l.placed,
            Rect {
                x: 0,
                y: 100,
                w: 400,
                h: 200
            }
        );
        // Square preset: 5 % margins of the final side → 400 / 0.9 = 444.4 → 445.
        let l = layout(640, 480, Some(SUBJECT), &spec("preset = \"square\"")).expect("layout");
        assert_eq!(l.canvas, (445, 445));
        assert_eq!(
            l.placed,
            Rect {
                x: 23,
                y: 123,
                w: 400,
                h: 200
            }
        );
        // Square with fill 80 %: 400 / 0.8 = 500.
        let l = layout(
            640,
            480,
            Some(SUBJECT),
            &spec("crop = \"subject\"\ncanvas = \"square\"\nfill = \"80%\""),
        )
        .expect("layout");
        assert_eq!(l.canvas, (500, 500));
        assert_eq!(
            l.placed,
            Rect {
                x: 50,
                y: 150,
                w: 400,
                h: 200
            }
        );
    }

    #[test]
    fn fill_without_canvas_adds_room_on_both_axes() {
        let l = layout(
            640,
            480,
            Some(SUBJECT),
            &spec("crop = \"subject\"\nfill = \"50%\""),
        )
        .expect("layout");
        assert_eq!(l.canvas, (800, 400));
        assert_eq!(
            l.placed,
            Rect {
                x: 200,
                y: 100,
                w: 400,
                h: 200
            }
        );
    }

    #[test]
    fn max_size_scales_everything_down_never_up() {
        let l = layout(
            640,
            480,
            Some(SUBJECT),
            &spec("preset = \"square\"\nmax_size = \"400x400\""),
        )
        .expect("layout");
        // 445² square → 400²: k = 400/445; the subject 400x200 → 360x180.
        assert_eq!(l.canvas, (400, 400));
        assert_eq!(
            l.placed,
            Rect {
                x: 20,
                y: 110,
                w: 360,
                h: 180
            }
        );
        let l = layout(640, 480, None, &spec("max_size = \"4000x4000\"")).expect("layout");
        assert_eq!(l.canvas, (640, 480));
        // Pixel margins shrink with the picture.
        let l = layout(
            1000,
            1000,
            None,
            &spec("margin = \"100px\"\nmax_size = \"600x600\""),
        )
        .expect("layout");
        assert_eq!(l.canvas, (600, 600));
        assert_eq!(
            l.placed,
            Rect {
                x: 50,
                y: 50,
                w: 500,
                h: 500
            }
        );
    }

    #[test]
    fn errors() {
        assert_eq!(
            layout(640, 480, None, &spec("crop = \"subject\"")),
            Err(FrameError::EmptySubject { threshold: 16 })
        );
        assert!(
            layout(0, 10, None, &spec("")).is_err(),
            "an empty picture is refused"
        );
        let e = layout(30_000, 10, None, &spec("fill = \"50%\"")).expect_err("too large");
        assert!(matches!(e, FrameError::TooLarge { .. }), "{e}");
    }

    #[test]
    fn one_pixel_subject_on_a_big_canvas() {
        let one = Rect {
            x: 3,
            y: 3,
            w: 1,
            h: 1,
        };
        let l = layout(8, 8, Some(one), &spec("preset = \"ebay\"")).expect("layout");
        assert_eq!(l.canvas, (1600, 1600));
        assert_eq!(
            l.placed,
            Rect {
                x: 799,
                y: 799,
                w: 2,
                h: 2
            }
        );
    }
}
