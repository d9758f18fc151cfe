//! The ONNX engine alone, for quick in-process measurements (no daemon,
//! no state; scripts/bench-onnx.sh measures `cutout process`): model + pictures →
//! RGBA PNG cut-outs, timing each picture's decode → mask → encode.
//!
//! cutout_one --model FILE [--kind isnet-general-use] [--threads N] [--arena]
//!            [--specks] [--holes] [--feather PX] [--decontaminate]
//!            [--mask-dir DIR] --out-dir DIR PICTURE...

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use cutout::engine::onnx::{ModelKind, OnnxEngine, OnnxOptions, PostOptions};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    // RUST_LOG=cutout=debug shows each stage's time.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let mut args = std::env::args().skip(1);
    let mut model = None;
    let mut kind = ModelKind::IsnetGeneralUse;
    let mut threads = 1;
    let mut arena = false;
    let mut post = PostOptions::default();
    let mut out_dir = None;
    let mut mask_dir = None;
    let mut pictures = Vec::new();
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(PathBuf::from(value()?)),
            "--kind" => kind = value()?.parse()?,
            "--threads" => threads = value()?.parse()?,
            "--arena" => arena = true,
            "--specks" => post.remove_specks = true,
            "--holes" => post.fill_holes = true,
            "--feather" => post.feather_px = value()?.parse()?,
            "--decontaminate" => post.decontaminate = true,
            "--out-dir" => out_dir = Some(PathBuf::from(value()?)),
            "--mask-dir" => mask_dir = Some(PathBuf::from(value()?)),
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            _ => pictures.push(PathBuf::from(arg)),
        }
    }
    let model = model.ok_or("--model is required")?;
    let out_dir = out_dir.ok_or("--out-dir is required")?;
    std::fs::create_dir_all(&out_dir)?;

    let t = Instant::now();
    let engine = OnnxEngine::load(&OnnxOptions {
        threads,
        memory_arena: arena,
        post,
        ..OnnxOptions::new(model, kind)
    })?;
    println!(
        "engine: {} (load {:.3} s)",
        engine.describe(),
        t.elapsed().as_secs_f64()
    );

    for picture in &pictures {
        let stem = picture
            .file_stem()
            .ok_or("picture without a name")?
            .to_string_lossy()
            .into_owned();
        let t0 = Instant::now();
        let rgba = image::open(picture)?.to_rgba8();
        let t1 = Instant::now();
        let out = engine.cut_out(&rgba)?;
        let t2 = Instant::now();
        out.save(out_dir.join(format!("{stem}.png")))?;
        let t3 = Instant::now();
        if let Some(dir) = &mask_dir {
            std::fs::create_dir_all(dir)?;
            let alpha = image::GrayImage::from_fn(out.width(), out.height(), |x, y| {
                image::Luma([out.get_pixel(x, y).0[3]])
            });
            alpha.save(dir.join(format!("{stem}.png")))?;
        }
        println!(
            "picture: {} {}x{} decode {:.3} mask {:.3} encode {:.3} total {:.3}",
            picture.display(),
            rgba.width(),
            rgba.height(),
            (t1 - t0).as_secs_f64(),
            (t2 - t1).as_secs_f64(),
            (t3 - t2).as_secs_f64(),
            (t3 - t0).as_secs_f64()
        );
    }
    Ok(())
}
