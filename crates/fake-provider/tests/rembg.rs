//! rembg.com fake over real HTTP: `/rmbg` success paths (formats, resize,
//! mask, bg_color, rotation), strict validation and auth errors, credits
//! and `/api/membership-usage`.

mod common;

use common::*;
use fake_provider::Endpoint;
use image::ImageFormat;
use serde_json::Value;

async fn err(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], status);
    assert!(v["error"].is_string());
    v
}

#[tokio::test]
async fn default_answer_is_a_webp_cutout_and_costs_one_credit() {
    let fake = start();
    let input = picture(40, 30);
    let r = rmbg(&fake, rembg_form(input.clone(), "shoe.png", &[])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/webp");
    let body = r.bytes().await.unwrap();
    assert_eq!(
        image::guess_format(&body).unwrap(),
        ImageFormat::WebP,
        "real WebP bytes"
    );
    let (img, has_alpha) = decode(&body);
    assert!(has_alpha);
    assert_eq!(img.dimensions(), (40, 30));
    assert_eq!(img.get_pixel(0, 0).0[3], 0, "background transparent");
    assert_eq!(
        img.get_pixel(20, 15).0,
        [200, 20, 20, 255],
        "subject opaque"
    );

    assert_eq!(fake.rembg_credits().remaining_included, 99_999);
    assert_eq!(fake.charged_hashes(), vec![sha(&input)]);
    let log = fake.log();
    assert_eq!(log.len(), 1);
    let e = &log[0];
    assert_eq!(e.method, "POST");
    assert_eq!(e.path, "/rmbg");
    assert_eq!(e.status, Some(200));
    assert_eq!(e.endpoint, Endpoint::RembgRemove);
    assert_eq!(e.file_name.as_deref(), Some("shoe.png"));
    assert!(e.charged);
}

#[tokio::test]
async fn png_resize_keeps_aspect_unless_exact() {
    let fake = start();
    let r = rmbg(
        &fake,
        rembg_form(picture(40, 20), "a.png", &[("format", "png"), ("w", "20")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let (img, alpha) = decode(&r.bytes().await.unwrap());
    assert!(alpha);
    assert_eq!(img.dimensions(), (20, 10));

    let r = rmbg(
        &fake,
        rembg_form(
            picture(40, 20),
            "a.png",
            &[("w", "15"), ("h", "15"), ("exact_resize", "true")],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(decode(&r.bytes().await.unwrap()).0.dimensions(), (15, 15));
}

#[tokio::test]
async fn mask_bg_color_and_rotation() {
    let fake = start();
    // mask: grey, no alpha channel
    let r = rmbg(
        &fake,
        rembg_form(
            picture(20, 20),
            "a.png",
            &[("mask", "true"), ("format", "png")],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(img.color(), image::ColorType::L8);
    let g = img.to_luma8();
    assert_eq!(g.get_pixel(0, 0).0[0], 0);
    assert_eq!(g.get_pixel(10, 10).0[0], 255);

    // bg_color: opaque fill
    let r = rmbg(
        &fake,
        rembg_form(picture(20, 20), "a.png", &[("bg_color", "#00ff00")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    let (img, _) = decode(&r.bytes().await.unwrap());
    assert_eq!(img.get_pixel(0, 0).0, [0, 255, 0, 255]);
    assert_eq!(img.get_pixel(10, 10).0, [200, 20, 20, 255]);

    // named colour, rotation with expand
    let r = rmbg(
        &fake,
        rembg_form(
            picture(40, 20),
            "a.png",
            &[("bg_color", "navy"), ("angle", "90")],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(decode(&r.bytes().await.unwrap()).0.dimensions(), (20, 40));

    // no expand: size kept
    let r = rmbg(
        &fake,
        rembg_form(
            picture(40, 20),
            "a.png",
            &[("angle", "-45.5"), ("expand", "false")],
        ),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(decode(&r.bytes().await.unwrap()).0.dimensions(), (40, 20));
}

#[tokio::test]
async fn jpeg_webp_and_bmp_inputs_are_accepted() {
    let fake = start();
    for (fmt, name) in [
        (ImageFormat::Jpeg, "a.jpeg"),
        (ImageFormat::WebP, "a.webp"),
        (ImageFormat::Bmp, "a.BMP"),
    ] {
        let r = rmbg(&fake, rembg_form(picture_as(20, 20, fmt), name, &[])).await;
        assert_eq!(r.status(), 200, "{name}");
    }
}

#[tokio::test]
async fn validation_errors_are_400_with_the_documented_shape() {
    let fake = start();
    let pic = || picture(10, 10);

    let v = err(rmbg(&fake, rembg_form(vec![], "a.png", &[])).await, 400).await;
    assert_eq!(v["error"], "Uploaded file is empty (0 bytes).");

    let v = err(
        rmbg(
            &fake,
            rembg_form(pic(), "a.png", &[("mask", "true"), ("bg_color", "red")]),
        )
        .await,
        400,
    )
    .await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("Cannot use 'mask=true'"));

    for (k, bad) in [("w", "0"), ("w", "10001"), ("h", "abc"), ("h", "1.5")] {
        let v = err(
            rmbg(&fake, rembg_form(pic(), "a.png", &[(k, bad)])).await,
            400,
        )
        .await;
        assert_eq!(v["details"][0]["field"], k);
        assert!(v["error"].as_str().unwrap().contains("must be an integer"));
    }
    let v = err(
        rmbg(&fake, rembg_form(pic(), "a.png", &[("format", "gif")])).await,
        400,
    )
    .await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("Invalid format 'gif'"));
    for bad in ["361", "-400", "x"] {
        err(
            rmbg(&fake, rembg_form(pic(), "a.png", &[("angle", bad)])).await,
            400,
        )
        .await;
    }
    for bad in ["#12", "#ggg", "blurple"] {
        err(
            rmbg(&fake, rembg_form(pic(), "a.png", &[("bg_color", bad)])).await,
            400,
        )
        .await;
    }
    err(
        rmbg(&fake, rembg_form(pic(), "a.png", &[("mask", "yes")])).await,
        400,
    )
    .await;
    let v = err(
        rmbg(&fake, rembg_form(pic(), "a.png", &[("quality", "9")])).await,
        400,
    )
    .await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("Unknown field 'quality'"));
    err(
        rmbg(&fake, rembg_form(pic(), "a.png", &[("w", "5"), ("w", "6")])).await,
        400,
    )
    .await;

    let v = err(rmbg(&fake, rembg_form(pic(), "a.exe", &[])).await, 400).await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("'.exe' is not supported"));
    let v = err(rmbg(&fake, rembg_form(pic(), "a.jpg", &[])).await, 400).await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("invalid file signature"));
    err(
        rmbg(&fake, rembg_form(b"hello".to_vec(), "a.png", &[])).await,
        400,
    )
    .await;

    // no image part at all / image without filename / without content type
    let form = reqwest::multipart::Form::new().text("format", "png");
    let v = err(rmbg(&fake, form).await, 400).await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .starts_with("No image file provided"));
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(pic())
            .mime_str("image/png")
            .unwrap(),
    );
    err(rmbg(&fake, form).await, 400).await;
    let form = reqwest::multipart::Form::new().part(
        "image",
        reqwest::multipart::Part::bytes(pic()).file_name("a.png"),
    );
    err(rmbg(&fake, form).await, 400).await;

    // not multipart
    let r = client()
        .post(format!("{}/rmbg", fake.base_url_rembg()))
        .header("x-api-key", RKEY)
        .body(pic())
        .send()
        .await
        .unwrap();
    err(r, 400).await;

    // nothing was charged
    assert_eq!(fake.rembg_credits().remaining_included, 100_000);
    assert!(fake.charged_hashes().is_empty());
}

#[tokio::test]
async fn too_wide_images_are_refused() {
    let fake = start();
    let wide = picture(10_001, 1);
    let v = err(rmbg(&fake, rembg_form(wide, "a.png", &[])).await, 400).await;
    assert!(v["error"]
        .as_str()
        .unwrap()
        .contains("Image width (10001px) exceeds"));
}

#[tokio::test]
async fn keys_are_checked() {
    let fake = start();
    let url = format!("{}/rmbg", fake.base_url_rembg());
    for key in [Some("wrong"), None] {
        let mut req = client()
            .post(&url)
            .multipart(rembg_form(picture(8, 8), "a.png", &[]));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        let v = err(req.send().await.unwrap(), 401).await;
        assert_eq!(v["error"], "invalid api key");
    }
    let r = client()
        .post(&url)
        .header("x-api-key", RKEY)
        .header("Authorization", "Bearer token")
        .multipart(rembg_form(picture(8, 8), "a.png", &[]))
        .send()
        .await
        .unwrap();
    err(r, 400).await;
    let r = client()
        .get(fake.usage_url_rembg())
        .header("x-api-key", "nope")
        .send()
        .await
        .unwrap();
    err(r, 401).await;
}

async fn usage(fake: &fake_provider::FakeProvider, query: &str) -> reqwest::Response {
    client()
        .get(format!("{}{query}", fake.usage_url_rembg()))
        .header("x-api-key", RKEY)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn credits_run_out_into_the_monthly_limit() {
    let fake = start();
    fake.set_rembg_credits(1, 1);
    for i in 0..2 {
        let r = rmbg(&fake, rembg_form(picture_n(i), "a.png", &[])).await;
        assert_eq!(r.status(), 200);
    }
    let v = err(
        rmbg(&fake, rembg_form(picture(9, 9), "a.png", &[])).await,
        429,
    )
    .await;
    assert_eq!(
        v["error"],
        "You've reached your monthly limit. Consider purchasing more credits."
    );
    assert_eq!(fake.charged_hashes().len(), 2);

    let v: Value = usage(&fake, "?expand=billing_cycle")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["billingCycle"]["remainingIncludedCredits"], 0);
    assert_eq!(v["billingCycle"]["prepaidCredits"], 0);
    assert_eq!(v["prepaidCredits"], 0);
    assert_eq!(v["api_usage"], 2);

    fake.set_rembg_credits(5, 3);
    let r = usage(&fake, "?expand=billing_cycle").await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let bc = &v["billingCycle"];
    assert_eq!(bc["remainingIncludedCredits"], 5);
    assert_eq!(v["prepaidCredits"], 3);
    for k in [
        "usedIncludedCredits",
        "includedCredits",
        "periodStartUnix",
        "periodEndUnix",
        "stripeBillingSynced",
    ] {
        assert!(!bc[k].is_null(), "{k}");
    }
    for k in ["membership", "credits", "app_usage", "api_usage"] {
        assert!(!v[k].is_null(), "{k}");
    }
    let r = rmbg(&fake, rembg_form(picture(9, 9), "a.png", &[])).await;
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn usage_query_is_validated() {
    let fake = start();
    let v: Value = usage(&fake, "").await.json().await.unwrap();
    assert!(v.get("billingCycle").is_none());
    assert_eq!(v["credits"], 100_000);
    err(
        usage(&fake, "?periodStartUnix=1700000000&year=2024").await,
        400,
    )
    .await;
    err(usage(&fake, "?expand=everything").await, 400).await;
    err(usage(&fake, "?foo=1").await, 400).await;
    assert_eq!(usage(&fake, "?year=2024&month=3").await.status(), 200);
    // POST is not allowed there, and unknown paths are JSON 404s
    let r = client()
        .post(fake.usage_url_rembg())
        .header("x-api-key", RKEY)
        .send()
        .await
        .unwrap();
    err(r, 405).await;
    let r = client()
        .get(format!("{}/nope", fake.base_url_rembg()))
        .send()
        .await
        .unwrap();
    err(r, 404).await;
}
