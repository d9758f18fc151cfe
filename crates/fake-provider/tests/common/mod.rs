//! Helpers shared by the integration tests: test pictures, multipart forms
//! for both APIs, and a reqwest client.
#![allow(dead_code)]

use std::io::Cursor;

use fake_provider::{Config, FakeProvider};
use image::{ImageFormat, Rgb, RgbImage};
use reqwest::multipart::{Form, Part};
use sha2::{Digest, Sha256};

pub const RKEY: &str = "test-rembg-key";
pub const VKEY: &str = "test-verging-key";

/// A white picture with a red square in the middle, as PNG (or `fmt`).
pub fn picture_as(w: u32, h: u32, fmt: ImageFormat) -> Vec<u8> {
    let img = RgbImage::from_fn(w, h, |x, y| {
        let inside = x >= w / 4 && x < w * 3 / 4 && y >= h / 4 && y < h * 3 / 4;
        if inside {
            Rgb([200, 20, 20])
        } else {
            Rgb([255, 255, 255])
        }
    });
    let mut out = Cursor::new(Vec::new());
    img.write_to(&mut out, fmt).unwrap();
    out.into_inner()
}

pub fn picture(w: u32, h: u32) -> Vec<u8> {
    picture_as(w, h, ImageFormat::Png)
}

/// Same size, different content (so the hash differs), for `n`.
pub fn picture_n(n: u32) -> Vec<u8> {
    picture(16 + n % 7, 16 + n / 7 % 5)
}

pub fn sha(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

pub fn client() -> reqwest::Client {
    // An Err only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().build().unwrap()
}

pub fn start() -> FakeProvider {
    FakeProvider::start(Config::default())
}

pub fn image_part(bytes: Vec<u8>, name: &str) -> Part {
    let mime = if name.ends_with(".jpg") {
        "image/jpeg"
    } else {
        "image/png"
    };
    Part::bytes(bytes)
        .file_name(name.to_string())
        .mime_str(mime)
        .unwrap()
}

/// rembg form with the `image` part and extra text parts.
pub fn rembg_form(bytes: Vec<u8>, name: &str, extra: &[(&str, &str)]) -> Form {
    let mut f = Form::new().part("image", image_part(bytes, name));
    for (k, v) in extra {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

/// POST /rmbg with the valid key.
pub async fn rmbg(fake: &FakeProvider, form: Form) -> reqwest::Response {
    client()
        .post(format!("{}/rmbg", fake.base_url_rembg()))
        .header("x-api-key", RKEY)
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// verging create-job form (image + file_name + job_type).
pub fn job_form(bytes: Vec<u8>, name: &str) -> Form {
    Form::new()
        .part("image", image_part(bytes, name))
        .text("file_name", name.to_string())
        .text("job_type", "background-removal")
}

pub async fn create_job(fake: &FakeProvider, form: Form) -> reqwest::Response {
    client()
        .post(format!(
            "{}/background-removal/create-job",
            fake.base_url_verging()
        ))
        .header("Authorization", format!("ApiKey {VKEY}"))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

/// create-job, returning the job id (asserting success).
pub async fn create_job_id(fake: &FakeProvider, bytes: Vec<u8>, name: &str) -> String {
    let r = create_job(fake, job_form(bytes, name)).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["code"], 10000);
    v["result"]["job_id"].as_str().unwrap().to_string()
}

pub async fn poll(fake: &FakeProvider, id: &str) -> serde_json::Value {
    let r = client()
        .get(format!(
            "{}/background-removal/jobs?job_ids={id}",
            fake.base_url_verging()
        ))
        .header("Authorization", format!("ApiKey {VKEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    let arr = v.as_array().expect("bare array");
    assert_eq!(arr.len(), 1);
    arr[0].clone()
}

/// Decodes an answer body and returns it as RGBA plus whether it had alpha.
pub fn decode(bytes: &[u8]) -> (image::RgbaImage, bool) {
    let img = image::load_from_memory(bytes).expect("an image");
    let has_alpha = img.color().has_alpha();
    (img.to_rgba8(), has_alpha)
}
