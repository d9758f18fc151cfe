//! Interim built-in segmenter (replaced by the full backdrop model).
#[derive(Debug, Clone, Default)]
pub struct BackdropOptions {}

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    #[error("image is too small to segment ({width}x{height}); it needs at least 8x8 pixels")]
    TooSmall { width: u32, height: u32 },
    #[error("no object found: the whole picture looks like backdrop")]
    NoObject,
}

pub fn cut_out(
    img: &image::RgbaImage,
    _opts: &BackdropOptions,
) -> Result<image::RgbaImage, SegmentError> {
    let (w, h) = img.dimensions();
    if w < 8 || h < 8 {
        return Err(SegmentError::TooSmall {
            width: w,
            height: h,
        });
    }
    let c = img.get_pixel(0, 0);
    let mut out = img.clone();
    let mut any = false;
    for p in out.pixels_mut() {
        let d: i32 = (0..3).map(|i| (p[i] as i32 - c[i] as i32).abs()).sum();
        p[3] = if d > 40 {
            any = true;
            255
        } else {
            0
        };
    }
    if !any {
        return Err(SegmentError::NoObject);
    }
    Ok(out)
}
