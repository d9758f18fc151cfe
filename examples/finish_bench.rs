//! CPU per picture for the finishing stage (`cutout::finish`) at 1, 4 and
//! 12 MP with three outputs: `amazon`, a transparent PNG, `thumbnail`.
//! Goal: ≤ 0.5 s CPU at 12 MP. Run:
//! `cargo run --release --example finish_bench`
//! Must not: write files (it only encodes in memory).

use cutout::finish::{check_outputs, finish, RawOutput};
use image::{Rgba, RgbaImage};

/// User + system CPU seconds of this process so far.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage only writes into the zeroed struct we pass.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

/// A packshot: an anti-aliased ellipse of varied colour filling ~60 % of the frame.
fn packshot(w: u32, h: u32) -> RgbaImage {
    let (cx, cy, rx, ry) = (
        w as f64 / 2.0,
        h as f64 / 2.0,
        w as f64 * 0.4,
        h as f64 * 0.4,
    );
    RgbaImage::from_fn(w, h, |x, y| {
        let d = ((x as f64 + 0.5 - cx) / rx).powi(2) + ((y as f64 + 0.5 - cy) / ry).powi(2);
        let edge = (1.0 - d.sqrt()) * rx.min(ry);
        let a = (edge + 0.5).clamp(0.0, 1.0);
        Rgba([
            (x % 251) as u8,
            (y % 241) as u8,
            90,
            (a * 255.0).round() as u8,
        ])
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let raw: Vec<RawOutput> = ["preset = \"amazon\"", "", "preset = \"thumbnail\""]
        .iter()
        .map(|t| toml::from_str(t))
        .collect::<Result<_, _>>()?;
    let specs = check_outputs(&raw)?;
    println!("size        MP   CPU s/picture (median of 3)   bytes (amazon, png, thumbnail)");
    for (w, h) in [(1155u32, 866u32), (2309, 1732), (4000, 3000)] {
        let img = packshot(w, h);
        let mut times = vec![];
        let mut sizes = vec![];
        for _ in 0..3 {
            let start = cpu_seconds();
            sizes = specs
                .iter()
                .map(|s| finish(&img, None, s).map(|f| f.bytes.len()))
                .collect::<Result<Vec<_>, _>>()?;
            times.push(cpu_seconds() - start);
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{w}x{h}  {:>4.1}   {:.3}                        {sizes:?}",
            (w * h) as f64 / 1e6,
            times[1]
        );
    }
    Ok(())
}
