//! verging.ai fake over real HTTP: auth header rules, `/auth/me`,
//! create-job + polling + result download, job timing, credits (402
//! 40001), strict form checks, and the presigned upload flow.

mod common;

use std::time::Duration;

use common::*;
use fake_provider::{Config, FakeProvider};
use reqwest::multipart::Form;
use serde_json::Value;

async fn err(r: reqwest::Response, status: u16) -> Value {
    assert_eq!(r.status(), status);
    let v: Value = r.json().await.unwrap();
    assert!(v["error_code"].is_number(), "{v}");
    assert!(v["message"].is_string(), "{v}");
    assert!(v.get("upstream_error").is_some(), "{v}");
    v
}

async fn me(fake: &FakeProvider, auth: Option<&str>) -> reqwest::Response {
    let mut req = client().get(format!("{}/auth/me", fake.base_url_verging()));
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    req.send().await.unwrap()
}

#[tokio::test]
async fn auth_header_must_be_apikey_space_key() {
    let fake = start();
    let r = me(&fake, Some(&format!("ApiKey {VKEY}"))).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["credits"], 100_000);
    assert!(v["email"].is_string() && v["name"].is_string());

    for bad in [
        Some(format!("Bearer {VKEY}")),
        Some(format!("ApiKey{VKEY}")),
        Some(format!("ApiKey  {VKEY}")),
        Some(format!("apikey {VKEY}")),
        Some("ApiKey wrong".to_string()),
        None,
    ] {
        let v = err(me(&fake, bad.as_deref()).await, 401).await;
        assert_eq!(v["error_code"], 40100);
        assert!(v["upstream_error"].is_null());
    }
}

#[tokio::test]
async fn job_flow_create_poll_download() {
    let fake = start();
    let input = picture(30, 20);
    let id = create_job_id(&fake, input.clone(), "bag.png").await;
    assert!(id.parse::<u64>().is_ok());
    assert_eq!(fake.verging_credits(), 99_999);
    assert_eq!(fake.charged_hashes(), vec![sha(&input)]);

    let job = poll(&fake, &id).await;
    assert_eq!(
        job["id"].as_u64().unwrap().to_string(),
        id,
        "id is a number here"
    );
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(job["progress"], 100);
    for k in ["image_url", "created_at", "updated_at"] {
        assert!(job[k].is_string(), "{k}");
    }
    let url = job["result_url"].as_str().unwrap();
    assert_eq!(url, format!("{}/files/{id}.png", fake.base_url()));
    // the result needs no auth
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let (img, alpha) = decode(&r.bytes().await.unwrap());
    assert!(alpha);
    assert_eq!(img.dimensions(), (30, 20));
    assert_eq!(img.get_pixel(0, 0).0[3], 0);
    assert_eq!(img.get_pixel(15, 10).0[3], 255);
    // the input is served at image_url
    let r = client()
        .get(job["image_url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.bytes().await.unwrap().as_ref(), input.as_slice());

    // listing without a query lists all jobs
    let id2 = create_job_id(&fake, picture(8, 8), "b.png").await;
    let r = client()
        .get(format!(
            "{}/background-removal/jobs",
            fake.base_url_verging()
        ))
        .header("Authorization", format!("ApiKey {VKEY}"))
        .send()
        .await
        .unwrap();
    let all: Value = r.json().await.unwrap();
    let ids: Vec<String> = all
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].to_string())
        .collect();
    assert_eq!(ids, vec![id.clone(), id2.clone()]);
    // several ids at once
    let r = client()
        .get(format!(
            "{}/background-removal/jobs?job_ids={id},{id2}",
            fake.base_url_verging()
        ))
        .header("Authorization", format!("ApiKey {VKEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap().as_array().unwrap().len(),
        2
    );
    assert_eq!(fake.job_ids().len(), 2);
}

#[tokio::test]
async fn jobs_move_pending_processing_completed() {
    let fake =
        FakeProvider::start(Config::default().with_job_processing(Duration::from_millis(1500)));
    let id = create_job_id(&fake, picture(8, 8), "a.png").await;
    let j = poll(&fake, &id).await;
    assert_eq!(j["status"], "PENDING", "{j}");
    assert!(j["result_url"].is_null());
    // result not there yet
    let r = client()
        .get(format!("{}/files/{id}.png", fake.base_url()))
        .send()
        .await
        .unwrap();
    err(r, 404).await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    let j = poll(&fake, &id).await;
    assert_eq!(j["status"], "PROCESSING", "{j}");
    let p = j["progress"].as_u64().unwrap();
    assert!((1..=99).contains(&p), "{p}");
    assert!(j["result_url"].is_null());
    tokio::time::sleep(Duration::from_millis(900)).await;
    let j = poll(&fake, &id).await;
    assert_eq!(j["status"], "COMPLETED", "{j}");
    assert!(j["result_url"].is_string());
}

#[tokio::test]
async fn no_credit_no_job() {
    let fake = start();
    fake.set_verging_credits(1);
    create_job_id(&fake, picture(8, 8), "a.png").await;
    let v = err(
        create_job(&fake, job_form(picture(9, 9), "b.png")).await,
        402,
    )
    .await;
    assert_eq!(v["error_code"], 40001);
    assert_eq!(fake.verging_credits(), 0);
    assert_eq!(fake.charged_hashes().len(), 1);
    let v: Value = me(&fake, Some(&format!("ApiKey {VKEY}")))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["credits"], 0);
    fake.set_verging_credits(3);
    create_job_id(&fake, picture(9, 9), "b.png").await;
}

#[tokio::test]
async fn create_job_form_is_strict() {
    let fake = start();
    let img = || image_part(picture(8, 8), "a.png");
    let cases: Vec<(Form, &str)> = vec![
        (
            Form::new().part("image", img()).text("file_name", "a.png"),
            "job_type is required",
        ),
        (
            Form::new()
                .part("image", img())
                .text("file_name", "a.png")
                .text("job_type", "video"),
            "Unsupported job_type",
        ),
        (
            Form::new()
                .part("image", img())
                .text("job_type", "background-removal"),
            "file_name is required",
        ),
        (
            Form::new()
                .text("file_name", "a.png")
                .text("job_type", "background-removal"),
            "File part 'image' is required",
        ),
        (
            job_form(picture(8, 8), "a.png").text("color", "red"),
            "Unknown form field 'color'",
        ),
        (job_form(vec![], "a.png"), "image is empty"),
        (
            job_form(b"GIF89a....".to_vec(), "a.png"),
            "Unsupported image type",
        ),
    ];
    for (form, msg) in cases {
        let v = err(create_job(&fake, form).await, 400).await;
        assert!(v["message"].as_str().unwrap().contains(msg), "{v} vs {msg}");
        assert_eq!(v["error_code"], 40000);
    }
    assert!(fake.charged_hashes().is_empty());
    assert_eq!(fake.verging_credits(), 100_000);

    // bad job ids in a poll
    let r = client()
        .get(format!(
            "{}/background-removal/jobs?job_ids=abc",
            fake.base_url_verging()
        ))
        .header("Authorization", format!("ApiKey {VKEY}"))
        .send()
        .await
        .unwrap();
    err(r, 400).await;
    // unknown files
    let r = client()
        .get(format!("{}/files/999999.png", fake.base_url()))
        .send()
        .await
        .unwrap();
    err(r, 404).await;
}

#[tokio::test]
async fn presigned_upload_flow() {
    let fake = start();
    let auth = format!("ApiKey {VKEY}");
    let input = picture(12, 12);
    let form = Form::new()
        .text("video_file_name", "shirt.png")
        .text("job_type", "background-removal");
    let r = client()
        .post(format!("{}/upload-video", fake.base_url_verging()))
        .header("Authorization", &auth)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let url = v["result"]["url"].as_str().unwrap().to_string();
    let public = v["result"]["public_url"].as_str().unwrap().to_string();

    // PUT with Authorization: 400
    let r = client()
        .put(&url)
        .header("Authorization", &auth)
        .body(input.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // PUT without: 200
    let r = client().put(&url).body(input.clone()).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // the public URL serves the bytes
    let got = client()
        .get(&public)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got.as_ref(), input.as_slice());
    assert!(fake.charged_hashes().is_empty(), "uploading is free");

    // An undocumented `image_url` instead of the `image` part: 400 naming
    // the part.
    let no_part = Form::new()
        .text("image_url", public.clone())
        .text("file_name", "shirt.png")
        .text("job_type", "background-removal");
    let r = create_job(&fake, no_part).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "File part 'image' is required", "{v}");
    // ... and alongside it: 400 (unknown field).
    let both = job_form(input.clone(), "shirt.png").text("image_url", public.clone());
    err(create_job(&fake, both).await, 400).await;
    assert!(fake.charged_hashes().is_empty());

    // After the presigned upload, create-job takes the documented form.
    let r = create_job(&fake, job_form(input.clone(), "shirt.png")).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let id = v["result"]["job_id"].as_str().unwrap().to_string();
    let job = poll(&fake, &id).await;
    assert_eq!(job["status"], "COMPLETED");
    assert_eq!(fake.charged_hashes(), vec![sha(&input)]);

    // unknown token: 403
    let r = client()
        .put(format!("{}/upload/doesnotexist", fake.base_url()))
        .body(input)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}
