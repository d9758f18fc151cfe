//! Pure-Rust tests run everywhere; the ones marked "runtime" load the real
//! ONNX Runtime from ORT_DYLIB_PATH with the few-KB models in
//! tests/fixtures/onnx/ (see its README), and say why when they skip.
//! The real-model test runs when CUTOUT_TEST_MODEL points to IS-Net.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use image::{GrayImage, Rgba, RgbaImage};

use super::kind::{IMAGENET_MEAN, IMAGENET_STD};
use super::postprocess::{apply_alpha, to_mask_u8};
use super::preprocess::{pil_lanczos, preprocess};
use super::tensor::{f16_bits_to_f32, f32_to_f16_bits};
use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/onnx")
        .join(name)
}

/// The runtime library for the tests, or `None` (printed) when this
/// machine has none; with CI or CUTOUT_REQUIRE_ORT set, a missing one fails.
fn test_runtime() -> Option<PathBuf> {
    match std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        Some(p) => Some(PathBuf::from(p)),
        None if std::env::var_os("CI").is_some()
            || std::env::var_os("CUTOUT_REQUIRE_ORT").is_some() =>
        {
            panic!("ORT_DYLIB_PATH is unset: run `cutout models fetch onnxruntime --dir models` and export ORT_DYLIB_PATH=models/libonnxruntime.so.1.31.1")
        }
        None => {
            eprintln!(
                "skipped: ORT_DYLIB_PATH is unset (`cutout models fetch onnxruntime` gets the library)"
            );
            None
        }
    }
}

fn tiny_engine(file: &str, post: PostOptions) -> Option<OnnxEngine> {
    let runtime = test_runtime()?;
    let opts = OnnxOptions {
        runtime: Some(runtime),
        post,
        ..OnnxOptions::new(fixture(file), ModelKind::U2netp)
    };
    Some(OnnxEngine::load(&opts).expect("the tiny model loads"))
}

/// A red square (x in 60..140, y in 40..110) on blue, 200×150.
fn red_on_blue() -> RgbaImage {
    RgbaImage::from_fn(200, 150, |x, y| {
        if (60..140).contains(&x) && (40..110).contains(&y) {
            Rgba([255, 0, 0, 255])
        } else {
            Rgba([0, 0, 255, 255])
        }
    })
}

#[test]
fn model_kinds_parse_rembg_names() {
    for kind in ModelKind::ALL {
        assert_eq!(kind.name().parse::<ModelKind>(), Ok(kind));
        assert_eq!(kind.to_string(), kind.name());
    }
    assert_eq!("isnet_general_use".parse(), Ok(ModelKind::IsnetGeneralUse));
    assert_eq!("U2NET-HUMAN-SEG".parse(), Ok(ModelKind::U2netHumanSeg));
    assert_eq!("bria-rmbg-2.0".parse(), Ok(ModelKind::BriaRmbg));
    let err = "u3net".parse::<ModelKind>().unwrap_err().to_string();
    assert!(
        err.contains("u3net") && err.contains("isnet-general-use"),
        "{err}"
    );
    assert_eq!(ModelKind::U2net.input_size(), 320);
    assert_eq!(ModelKind::IsnetGeneralUse.input_size(), 1024);
    assert_eq!(ModelKind::BirefnetGeneral.input_size(), 1024);
    assert!(ModelKind::BirefnetPortrait.sigmoid() && !ModelKind::IsnetGeneralUse.sigmoid());
}

#[test]
fn preprocess_normalises_like_rembg() {
    // A uniform picture stays uniform through Lanczos: x / max = 1 for every channel's max.
    let img = RgbaImage::from_pixel(7, 5, Rgba([100, 150, 200, 0]));
    let t = preprocess(&img, ModelKind::U2net, 4).unwrap();
    assert_eq!(t.len(), 3 * 16);
    let expect = |c: usize| {
        ((f64::from([100u8, 150, 200][c]) / 200.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]) as f32
    };
    for c in 0..3 {
        assert!(
            t[c * 16..(c + 1) * 16].iter().all(|&v| v == expect(c)),
            "channel {c}: {:?}",
            &t[c * 16..]
        );
    }
    // IS-Net: mean 0.5, std 1.
    let t = preprocess(&img, ModelKind::IsnetGeneralUse, 2).unwrap();
    assert_eq!(t[0], (0.5f64 - 0.5) as f32);
    assert_eq!(t[8], (1.0f64 - 0.5) as f32);
    // Black: no division by zero.
    let black = RgbaImage::from_pixel(3, 3, Rgba([0, 0, 0, 255]));
    let t = preprocess(&black, ModelKind::IsnetAnime, 2).unwrap();
    assert!(t.iter().all(|v| v.is_finite()));
    assert_eq!(t[0], -0.485f32);
}

#[test]
fn preprocess_is_nchw_and_ignores_alpha() {
    // Left half red, right half green, at the model's own size: no resampling mix at the centre.
    let img = RgbaImage::from_fn(8, 8, |x, _| {
        if x < 4 {
            Rgba([255, 0, 0, 0])
        } else {
            Rgba([0, 255, 0, 7])
        }
    });
    let t = preprocess(&img, ModelKind::IsnetGeneralUse, 8).unwrap();
    let (r, g) = (&t[0..64], &t[64..128]);
    assert_eq!(r[0], 0.5); // row 0, x 0: red
    assert_eq!(g[0], -0.5);
    assert_eq!(r[7], -0.5); // row 0, x 7: green
    assert_eq!(g[7], 0.5);
    assert!(t[128..].iter().all(|&b| b == -0.5)); // blue plane
}

/// Expected bytes from Pillow 12.3 `Image.resize(…, Image.LANCZOS)`.
#[test]
fn lanczos_matches_pillow_bit_for_bit() {
    let rgb: Vec<u8> = (0..5u32)
        .flat_map(|y| {
            (0..7u32).flat_map(move |x| {
                (0..3u32).map(move |c| ((x * 53 + y * 29 + c * 80 + x * y * 17) % 256) as u8)
            })
        })
        .collect();
    let up = [
        0, 73, 143, 14, 96, 213, 55, 134, 227, 91, 150, 60, 108, 227, 0, 143, 255, 56, 235, 113,
        83, 186, 2, 119, 14, 57, 181, 2, 134, 229, 53, 169, 244, 5, 83, 164, 25, 99, 174, 68, 149,
        145, 99, 201, 49, 148, 227, 20, 194, 187, 77, 197, 84, 141, 121, 60, 150, 33, 126, 124, 65,
        121, 151, 119, 93, 184, 20, 101, 203, 48, 119, 118, 99, 181, 19, 131, 255, 39, 206, 201,
        85, 242, 78, 127, 130, 70, 213, 45, 157, 177, 90, 208, 46, 161, 100, 56, 197, 3, 112, 38,
        111, 224, 64, 170, 107, 136, 235, 0, 214, 201, 45, 229, 106, 161, 166, 60, 211, 68, 156,
        194, 88, 219, 105, 201, 153, 41, 183, 91, 100, 129, 71, 167, 52, 124, 237, 81, 190, 144,
        160, 218, 41, 240, 94, 89, 176, 53, 197, 63, 143, 223, 89, 233, 110, 197, 192, 46, 245, 68,
        126, 142, 96, 205, 49, 162, 234, 61, 155, 255, 114, 141, 180, 172, 96, 73, 149, 46, 169,
        81, 120, 204, 75, 226, 120, 192, 180, 58, 241, 123, 116, 161, 130, 231, 135, 97, 206, 145,
        71, 142, 76, 191, 230, 152, 96, 166, 191, 2, 102, 67, 79, 173, 45, 192, 138, 159, 208, 44,
        241, 105, 100, 200, 86, 215, 100, 169, 246, 142, 95, 166, 210, 10, 91, 94, 210, 73, 174,
        113, 109, 222, 33, 130, 98, 137, 83, 102, 165, 49, 209, 99, 92, 171, 117, 196, 135, 121,
        226, 166, 83, 162, 142, 92, 167, 113, 112, 193, 103, 214, 0, 181, 135, 71, 239, 77, 141,
        137, 175, 16, 153, 132, 0, 230, 23, 143, 109, 140, 255, 94, 156, 213, 225, 16, 95, 142, 90,
        172, 33, 195, 255,
    ];
    assert_eq!(pil_lanczos(&rgb, 7, 5, 3, 11, 9).unwrap(), up);
    let down = [
        77, 150, 125, 159, 157, 106, 115, 109, 142, 139, 124, 120, 152, 131, 130, 158, 110, 176,
    ];
    assert_eq!(pil_lanczos(&rgb, 7, 5, 3, 3, 2).unwrap(), down);
    let gray: Vec<u8> = (0..5u32)
        .flat_map(|y| (0..7u32).map(move |x| ((x * 37 + y * 91) % 256) as u8))
        .collect();
    let gray_up = [
        5, 55, 132, 239, 17, 84, 150, 198, 37, 132, 180, 130, 79, 175, 199, 56, 145, 164, 168, 27,
        201, 101, 97, 66, 203, 45, 60, 136, 142, 31, 89, 205, 58, 62, 147, 238, 29, 117, 158, 202,
        64, 166, 118, 123, 111, 198, 74, 54, 139, 218, 48, 11,
    ];
    assert_eq!(pil_lanczos(&gray, 7, 5, 1, 4, 13).unwrap(), gray_up);
    assert_eq!(pil_lanczos(&gray, 7, 5, 1, 7, 5).unwrap(), gray);
    assert!(pil_lanczos(&gray, 7, 5, 1, 0, 5).is_err());
}

#[test]
fn mask_output_is_min_max_scaled_and_truncated() {
    assert_eq!(
        to_mask_u8(&[-2.0, 0.0, 2.0, 1.99], false),
        vec![0, 127, 255, 254]
    );
    // Sigmoid first (BiRefNet): monotone, so min–max still spans 0..255.
    let m = to_mask_u8(&[-4.0, 0.0, 4.0], true);
    assert_eq!((m[0], m[1], m[2]), (0, 127, 255));
    assert_eq!(to_mask_u8(&[3.0, 3.0], false), vec![0, 0]);
    assert_eq!(to_mask_u8(&[f32::NAN, 0.0, 1.0], false), vec![0, 0, 255]);
}

#[test]
fn f16_conversions_round_trip() {
    assert_eq!(f32_to_f16_bits(1.0), 0x3c00);
    assert_eq!(f32_to_f16_bits(-2.0), 0xc000);
    assert_eq!(f32_to_f16_bits(0.5), 0x3800);
    assert_eq!(f32_to_f16_bits(65504.0), 0x7bff);
    assert_eq!(f32_to_f16_bits(65520.0), 0x7c00);
    assert_eq!(f32_to_f16_bits(1e-8), 0);
    assert_eq!(f32_to_f16_bits(6e-8), 1);
    assert_eq!(f32_to_f16_bits(1.0 + 1.0 / 2048.0), 0x3c00); // tie → even
    assert_eq!(f32_to_f16_bits(1.0 + 3.0 / 2048.0), 0x3c02);
    for bits in 0..=u16::MAX {
        let f = f16_bits_to_f32(bits);
        if !f.is_nan() {
            assert_eq!(f32_to_f16_bits(f), bits, "{bits:#06x} → {f}");
        }
    }
}

#[test]
fn alpha_keeps_original_colours() {
    let img = RgbaImage::from_fn(3, 1, |x, _| {
        Rgba([10 * x as u8 + 1, 20, 30, [255, 255, 128][x as usize]])
    });
    let mask = GrayImage::from_vec(3, 1, vec![0, 200, 255]).unwrap();
    let out = apply_alpha(&img, &mask);
    assert_eq!(out.get_pixel(0, 0).0, [1, 20, 30, 0]);
    assert_eq!(out.get_pixel(1, 0).0, [11, 20, 30, 200]);
    assert_eq!(out.get_pixel(2, 0).0, [21, 20, 30, 128]);
}

mod runtime;
