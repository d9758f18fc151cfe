//! The peer fakes over real HTTP: remove.bg (`/v1.0/removebg`,
//! `/v1.0/account`: key, strict parts, credits and free calls, the
//! megapixel rate window and its headers, its error shape) and rembg's own
//! server (`/api/remove`, `/openapi.json`: FastAPI 422s, 500s, the proxy
//! key, what it records).

mod common;

use std::time::Duration;

use common::*;
use fake_provider::{Api, Endpoint, Fault, FaultRule, MegapixelWindow};
use reqwest::multipart::Form;
use serde_json::Value;

const KEY: &str = "test-remove-bg-key";

fn bg_form(bytes: Vec<u8>, extra: &[(&str, &str)]) -> Form {
    let mut f = Form::new().part("image_file", image_part(bytes, "a.png"));
    for (k, v) in extra {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

async fn removebg(
    fake: &fake_provider::FakeProvider,
    key: Option<&str>,
    form: Form,
) -> reqwest::Response {
    let mut rb = client()
        .post(format!("{}/v1.0/removebg", fake.base_url_remove_bg()))
        .multipart(form);
    if let Some(k) = key {
        rb = rb.header("X-Api-Key", k);
    }
    rb.send().await.unwrap()
}

async fn first_error(r: reqwest::Response, status: u16) -> (String, String) {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    let e = &v["errors"][0];
    (
        e["code"].as_str().unwrap_or("").to_string(),
        e["title"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn remove_bg_answers_a_png_cutout_charges_and_tells_its_budget() {
    let fake = start();
    fake.set_remove_bg_credits(3.0, 0);
    let r = removebg(
        &fake,
        Some(KEY),
        bg_form(picture(40, 30), &[("size", "auto")]),
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.headers()["x-credits-charged"], "1");
    assert_eq!(r.headers()["x-ratelimit-limit"], "500");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "499");
    assert!(r.headers().contains_key("x-ratelimit-reset"));
    let (img, alpha) = decode(&r.bytes().await.unwrap());
    assert!(alpha);
    assert_eq!(img.get_pixel(0, 0).0[3], 0);
    assert_eq!(fake.remove_bg_credits().0, 2.0);
    assert_eq!(fake.charged_count(Api::RemoveBg), 1);
    // The account tells the same.
    let v: Value = client()
        .get(format!("{}/v1.0/account", fake.base_url_remove_bg()))
        .header("X-Api-Key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"]["attributes"]["credits"]["total"], 2.0);
    assert_eq!(v["data"]["attributes"]["api"]["free_calls"], 0);
}

#[tokio::test]
async fn remove_bg_is_strict_about_key_parts_and_values() {
    let fake = start();
    let (code, _) = first_error(
        removebg(&fake, None, bg_form(picture(8, 8), &[])).await,
        403,
    )
    .await;
    assert_eq!(code, "api_key_missing");
    let (code, _) = first_error(
        removebg(&fake, Some("nope"), bg_form(picture(8, 8), &[])).await,
        403,
    )
    .await;
    assert_eq!(code, "api_key_invalid");
    for (extra, want) in [
        (vec![("sizes", "auto")], "unknown_parameter"),
        (vec![("size", "huge")], "invalid_size"),
        (vec![("crop", "yes")], "invalid_crop"),
        (vec![("roi", "0 0 10")], "invalid_roi"),
        (vec![("bg_color", "#zzz")], "invalid_bg_color"),
        (vec![("image_url", "https://x/y.png")], "multiple_sources"),
    ] {
        let (code, _) = first_error(
            removebg(&fake, Some(KEY), bg_form(picture(8, 8), &extra)).await,
            400,
        )
        .await;
        assert_eq!(code, want, "{extra:?}");
    }
    let none = Form::new().text("size", "auto");
    let (code, _) = first_error(removebg(&fake, Some(KEY), none).await, 400).await;
    assert_eq!(code, "missing_source");
    assert_eq!(
        fake.charged_count(Api::RemoveBg),
        0,
        "failed calls cost nothing"
    );
}

#[tokio::test]
async fn remove_bg_credits_free_calls_and_402() {
    let fake = start();
    fake.set_remove_bg_credits(0.25, 1);
    let small = |_: ()| bg_form(picture(8, 8), &[("size", "preview")]);
    let r = removebg(&fake, Some(KEY), small(())).await;
    assert_eq!(r.headers()["x-credits-charged"], "0", "a free call");
    let r = removebg(&fake, Some(KEY), small(())).await;
    assert_eq!(r.headers()["x-credits-charged"], "0.25");
    let (code, _) = first_error(removebg(&fake, Some(KEY), small(())).await, 402).await;
    assert_eq!(code, "insufficient_credits");
    fake.inject(FaultRule::next(1, Fault::QuotaExhausted).api(Api::RemoveBg));
    fake.set_remove_bg_credits(5.0, 0);
    let (code, _) = first_error(removebg(&fake, Some(KEY), small(())).await, 402).await;
    assert_eq!(code, "insufficient_credits");
}

#[tokio::test]
async fn remove_bg_window_refuses_with_retry_after_until_it_resets() {
    let fake = start();
    fake.set_remove_bg_window(Some(MegapixelWindow {
        limit: 2,
        window: Duration::from_millis(1500),
    }));
    for left in ["1", "0"] {
        let r = removebg(&fake, Some(KEY), bg_form(picture(8, 8), &[])).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-ratelimit-remaining"], left);
    }
    let r = removebg(&fake, Some(KEY), bg_form(picture(8, 8), &[])).await;
    assert_eq!(r.status(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&wait), "{wait}");
    let (code, _) = first_error(r, 429).await;
    assert_eq!(code, "rate_limit_exceeded");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let r = removebg(&fake, Some(KEY), bg_form(picture(8, 8), &[])).await;
    assert_eq!(r.status(), 200, "a new window");
    assert_eq!(fake.charged_count(Api::RemoveBg), 3);
}

async fn server(fake: &fake_provider::FakeProvider, form: Form, query: &str) -> reqwest::Response {
    client()
        .post(format!(
            "{}/api/remove{query}",
            fake.base_url_rembg_server()
        ))
        .multipart(form)
        .send()
        .await
        .unwrap()
}

fn file_form(extra: &[(&str, &str)]) -> Form {
    let mut f = Form::new().part("file", image_part(picture(40, 30), "a.png"));
    for (k, v) in extra {
        f = f.text(k.to_string(), v.to_string());
    }
    f
}

#[tokio::test]
async fn rembg_server_answers_png_and_records_the_call() {
    let fake = start();
    let r = server(
        &fake,
        file_form(&[("model", "u2netp"), ("om", "true")]),
        "?bgc=1,2,3,255",
    )
    .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let (img, _) = decode(&r.bytes().await.unwrap());
    assert_eq!(img.dimensions(), (40, 30));
    let calls = fake.rembg_server_calls();
    assert_eq!(calls[0].model.as_deref(), Some("u2netp"));
    assert_eq!(
        calls[0].query,
        vec![("bgc".to_string(), "1,2,3,255".to_string())]
    );
    assert_eq!(fake.charged_count(Api::RembgServer), 1);
    let r = client()
        .get(format!("{}/openapi.json", fake.base_url_rembg_server()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn rembg_server_422s_and_500s_like_fastapi() {
    let fake = start();
    for (form, query, loc) in [
        (Form::new().text("model", "u2net"), "", "file"),
        (file_form(&[("af", "x")]), "", "af"),
        (file_form(&[("af", "300")]), "", "af"),
        (file_form(&[("model", "nope")]), "", "model"),
        (file_form(&[("a", "maybe")]), "", "a"),
        (file_form(&[("colour", "red")]), "", "colour"),
        (file_form(&[]), "?extras=notjson", "extras"),
        (file_form(&[]), "?foo=1", "foo"),
    ] {
        let r = server(&fake, form, query).await;
        assert_eq!(r.status(), 422, "{loc}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["detail"][0]["loc"][1], loc, "{v}");
        assert!(v["detail"][0]["msg"].is_string());
    }
    let r = server(&fake, file_form(&[]), "?bgc=1,2").await;
    assert_eq!(r.status(), 500);
    assert_eq!(r.text().await.unwrap(), "Internal Server Error");
    fake.inject(
        FaultRule::next(1, Fault::Invalid("bad picture".into()))
            .endpoint(Endpoint::RembgServerRemove),
    );
    let r = server(&fake, file_form(&[]), "").await;
    assert_eq!(r.status(), 422);
    assert_eq!(fake.charged_count(Api::RembgServer), 0);
}

#[tokio::test]
async fn rembg_server_behind_a_proxy_wants_the_bearer_key() {
    let fake = start();
    fake.set_key(Api::RembgServer, "px");
    let r = server(&fake, file_form(&[]), "").await;
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{}/api/remove", fake.base_url_rembg_server()))
        .header("Authorization", "Bearer px")
        .multipart(file_form(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}
