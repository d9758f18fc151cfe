//! Every control switch of the fake over real HTTP: latency, rate limits
//! with each `Retry-After` form, quota, keys, 5xx bursts, failing and
//! endless verging jobs, garbage and alpha-less bodies, dropped and
//! truncated connections, file-name targeting, next-N vs always, the
//! request log (and its JSON-lines file), concurrency, and stop.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant, SystemTime};

use common::*;
use fake_provider::{
    Api, Config, Endpoint, FakeProvider, Fault, FaultRule, Opaque, RateLimit, RetryAfter,
};
use serde_json::Value;

fn auth() -> String {
    format!("ApiKey {VKEY}")
}

/// `GET …/background-removal/jobs?job_ids=ID` with the right key.
async fn jobs(fake: &FakeProvider, id: &str) -> reqwest::Response {
    client()
        .get(format!(
            "{}/background-removal/jobs?job_ids={id}",
            fake.base_url_verging()
        ))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
}

async fn me(fake: &FakeProvider) -> reqwest::Response {
    client()
        .get(format!("{}/auth/me", fake.base_url_verging()))
        .header("Authorization", auth())
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn latency_is_added_and_changeable_at_runtime() {
    let fake = FakeProvider::start(Config::default().with_latency(Duration::from_millis(300)));
    let t = Instant::now();
    assert_eq!(me(&fake).await.status(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    fake.set_latency(Api::Verging, Duration::ZERO);
    let t = Instant::now();
    assert_eq!(me(&fake).await.status(), 200);
    assert!(t.elapsed() < Duration::from_millis(250));
    // rembg still slow
    let t = Instant::now();
    rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[])).await;
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(fake.log()[0].duration >= Duration::from_millis(300));
}

#[tokio::test]
async fn delay_one_file_only() {
    let fake = start();
    fake.inject(FaultRule::always(Fault::Delay(Duration::from_millis(400))).file_contains("slow"));
    fake.inject(FaultRule::always(Fault::Status(502)).file_contains("slow-bad"));
    let t = Instant::now();
    assert_eq!(
        rmbg(&fake, rembg_form(picture(8, 8), "fast.png", &[]))
            .await
            .status(),
        200
    );
    assert!(t.elapsed() < Duration::from_millis(350));
    let t = Instant::now();
    assert_eq!(
        rmbg(&fake, rembg_form(picture(8, 8), "slow.png", &[]))
            .await
            .status(),
        200
    );
    assert!(t.elapsed() >= Duration::from_millis(400));
    // a delay and an answering fault combine
    let t = Instant::now();
    assert_eq!(
        rmbg(&fake, rembg_form(picture(8, 8), "slow-bad.png", &[]))
            .await
            .status(),
        502
    );
    assert!(t.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn rate_limit_answers_429_with_each_retry_after_form() {
    let fake = start();
    // no header
    fake.set_rate_limit(Api::Rembg, Some(RateLimit::per_second(3)));
    let mut statuses = Vec::new();
    for i in 0..5 {
        let r = rmbg(&fake, rembg_form(picture_n(i), "a.png", &[])).await;
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert!(r.headers().get("retry-after").is_none());
            let v: Value = r.json().await.unwrap();
            assert!(v["error"]
                .as_str()
                .unwrap()
                .starts_with("You're making requests too quickly"));
        }
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(fake.count_429(), 2);
    assert_eq!(fake.charged_hashes().len(), 3);
    // the usage endpoint is not limited
    let r = client()
        .get(fake.usage_url_rembg())
        .header("x-api-key", RKEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // seconds form, on verging
    fake.set_rate_limit(
        Api::Verging,
        Some(RateLimit::per_second(1).with_retry_after(RetryAfter::Seconds)),
    );
    assert_eq!(me(&fake).await.status(), 200);
    let r = me(&fake).await;
    assert_eq!(r.status(), 429);
    let secs: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(secs, 1);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], 42900);

    // HTTP-date form
    fake.set_rate_limit(
        Api::Verging,
        Some(RateLimit::per_second(1).with_retry_after(RetryAfter::HttpDate)),
    );
    assert_eq!(me(&fake).await.status(), 200);
    let r = me(&fake).await;
    assert_eq!(r.status(), 429);
    let at = httpdate::parse_http_date(r.headers()["retry-after"].to_str().unwrap()).unwrap();
    assert!(at > SystemTime::now());
    assert!(at < SystemTime::now() + Duration::from_secs(3));

    // tokens come back with time
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(me(&fake).await.status(), 200);
    fake.set_rate_limit(Api::Verging, None);
    for _ in 0..5 {
        assert_eq!(me(&fake).await.status(), 200);
    }
    // injected 429 with a fixed Retry-After
    fake.inject(FaultRule::next(
        1,
        Fault::RateLimited(RetryAfter::FixedSeconds(7)),
    ));
    let r = me(&fake).await;
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "7");
}

#[tokio::test]
async fn quota_fault_and_keys() {
    let fake = start();
    fake.inject(FaultRule::next(1, Fault::QuotaExhausted).api(Api::Rembg));
    let r = rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[])).await;
    assert_eq!(r.status(), 429);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        "You've reached your monthly limit. Consider purchasing more credits."
    );
    fake.inject(FaultRule::next(1, Fault::QuotaExhausted).api(Api::Verging));
    let r = create_job(&fake, job_form(picture(8, 8), "a.png")).await;
    assert_eq!(r.status(), 402);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error_code"], 40001);
    assert!(fake.charged_hashes().is_empty());
    assert!(fake.faults().is_empty(), "next-1 rules are spent");

    // key change at runtime
    fake.set_key(Api::Verging, "new-key");
    assert_eq!(me(&fake).await.status(), 401);
    let r = client()
        .get(format!("{}/auth/me", fake.base_url_verging()))
        .header("Authorization", "ApiKey new-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // injected 401
    fake.inject(FaultRule::next(1, Fault::Unauthorized).api(Api::Rembg));
    let r = rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[])).await;
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn burst_of_5xx_then_recovery() {
    let fake = start();
    fake.fail_next(Api::Rembg, 3, 502);
    let mut got = Vec::new();
    for i in 0..4 {
        let r = rmbg(&fake, rembg_form(picture_n(i), "a.png", &[])).await;
        got.push(r.status().as_u16());
        if r.status() == 502 {
            let v: Value = r.json().await.unwrap();
            assert_eq!(v["status"], 502);
        }
    }
    assert_eq!(got, vec![502, 502, 502, 200]);
    assert_eq!(fake.charged_hashes().len(), 1);

    fake.inject(FaultRule::always(Fault::Status(503)).api(Api::Verging));
    for _ in 0..3 {
        let r = me(&fake).await;
        assert_eq!(r.status(), 503);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error_code"], 50300);
    }
    fake.clear_faults();
    assert_eq!(me(&fake).await.status(), 200);

    // endpoint targeting: only polls fail
    let id = create_job_id(&fake, picture(8, 8), "a.png").await;
    fake.inject(FaultRule::next(2, Fault::Status(500)).endpoint(Endpoint::VergingJobs));
    assert_eq!(me(&fake).await.status(), 200);
    for _ in 0..2 {
        let r = jobs(&fake, &id).await;
        assert_eq!(r.status(), 500);
    }
    assert_eq!(poll(&fake, &id).await["status"], "COMPLETED");
    assert_eq!(fake.count_status(500), 2);
}

#[tokio::test]
async fn jobs_that_fail_or_never_finish() {
    let fake =
        FakeProvider::start(Config::default().with_job_processing(Duration::from_millis(200)));
    fake.inject(FaultRule::always(Fault::JobFails).file_contains("doomed"));
    fake.inject(FaultRule::next(1, Fault::JobNeverFinishes));
    let doomed = create_job_id(&fake, picture(8, 8), "doomed-1.png").await;
    let stuck = create_job_id(&fake, picture(9, 9), "ok-1.png").await;
    let fine = create_job_id(&fake, picture(10, 10), "ok-2.png").await;
    let doomed2 = create_job_id(&fake, picture(11, 11), "doomed-2.png").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    for id in [&doomed, &doomed2] {
        let j = poll(&fake, id).await;
        assert_eq!(j["status"], "FAILED");
        assert!(j["result_url"].is_null());
    }
    let j = poll(&fake, &stuck).await;
    assert_eq!(j["status"], "PROCESSING");
    assert!(j["result_url"].is_null());
    assert_eq!(poll(&fake, &fine).await["status"], "COMPLETED");
    // every job was paid for
    assert_eq!(fake.charged_count(Api::Verging), 4);
}

#[tokio::test]
async fn garbage_and_opaque_bodies() {
    let fake = start();
    fake.inject(FaultRule::next(1, Fault::GarbageHtml).api(Api::Rembg));
    let r = rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[])).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(r.text().await.unwrap().contains("<html>"));

    fake.inject(FaultRule::next(1, Fault::GarbageBytes).api(Api::Rembg));
    let r = rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[])).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/webp");
    assert!(image::load_from_memory(&r.bytes().await.unwrap()).is_err());

    fake.inject(FaultRule::next(1, Fault::NoAlpha(Opaque::Jpeg)).api(Api::Rembg));
    let r = rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[])).await;
    assert_eq!(r.headers()["content-type"], "image/jpeg");
    let (_, alpha) = decode(&r.bytes().await.unwrap());
    assert!(!alpha);

    // verging: the download is the image endpoint
    fake.inject(FaultRule::next(1, Fault::NoAlpha(Opaque::Png)).api(Api::Verging));
    let id = create_job_id(&fake, picture(8, 8), "a.png").await;
    let url = poll(&fake, &id).await["result_url"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client().get(&url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    let img = image::load_from_memory(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(img.color(), image::ColorType::Rgb8);
    // the next download is fine again
    let (_, alpha) = decode(
        &client()
            .get(&url)
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    );
    assert!(alpha);
    assert_eq!(
        fake.charged_hashes().len(),
        4,
        "faulty answers were still charged"
    );
}

#[tokio::test]
async fn dropped_connections_and_truncated_bodies() {
    let fake = start();
    // dropped before processing: nothing charged
    fake.inject(FaultRule::next(1, Fault::DropConnection).api(Api::Rembg));
    let r = client()
        .post(format!("{}/rmbg", fake.base_url_rembg()))
        .header("x-api-key", RKEY)
        .multipart(rembg_form(picture(8, 8), "a.png", &[]))
        .send()
        .await;
    assert!(r.is_err(), "{r:?}");
    let e = fake.log().pop().unwrap();
    assert_eq!(e.status, None);
    assert!(!e.charged);
    assert_eq!(fake.count_dropped(), 1);

    // dropped after the charge: paid, no answer
    fake.inject(FaultRule::next(1, Fault::DropAfterCharge).api(Api::Verging));
    let r = client()
        .post(format!(
            "{}/background-removal/create-job",
            fake.base_url_verging()
        ))
        .header("Authorization", auth())
        .multipart(job_form(picture(8, 8), "a.png"))
        .send()
        .await;
    assert!(r.is_err());
    let e = fake.log().pop().unwrap();
    assert_eq!(e.status, None);
    assert!(e.charged);
    assert!(e.job_id.is_some());

    // truncated image body
    fake.inject(FaultRule::next(1, Fault::Truncate).api(Api::Rembg));
    let r = rmbg(&fake, rembg_form(picture(64, 64), "a.png", &[])).await;
    assert_eq!(r.status(), 200);
    let declared: usize = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(declared > 0);
    assert!(r.bytes().await.is_err(), "body must be cut short");

    // truncated JSON (poll)
    let id = create_job_id(&fake, picture(8, 8), "b.png").await;
    fake.inject(FaultRule::next(1, Fault::Truncate).endpoint(Endpoint::VergingJobs));
    let r = jobs(&fake, &id).await;
    assert!(r.bytes().await.is_err());
    // and everything works afterwards
    assert_eq!(poll(&fake, &id).await["status"], "COMPLETED");
}

/// Raw socket view of the wire faults (and proof the fake works from a
/// plain sync test).
#[test]
fn wire_faults_seen_on_a_raw_socket() {
    let fake = start();
    let get = |path: &str| -> Vec<u8> {
        let mut s = TcpStream::connect(fake.addr()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey {VKEY}\r\n\r\n"
        )
        .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
        buf
    };
    fake.inject(FaultRule::next(1, Fault::DropConnection));
    assert!(get("/api/v1/auth/me").is_empty(), "closed without a byte");

    fake.inject(FaultRule::next(1, Fault::Truncate));
    let raw = get("/api/v1/auth/me");
    let text = String::from_utf8_lossy(&raw).to_string();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"));
    let cl: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(body.len() < cl, "{} < {cl}", body.len());
    assert!(!body.is_empty());
    assert_eq!(fake.count_dropped(), 1);
}

#[tokio::test]
async fn one_file_fails_for_good_others_pass() {
    let fake = start();
    fake.fail_file("broken", "Image is corrupt");
    for _ in 0..2 {
        let r = rmbg(&fake, rembg_form(picture(8, 8), "broken-shoe.png", &[])).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"], "Image is corrupt");
        let r = create_job(&fake, job_form(picture(8, 8), "broken-shoe.png")).await;
        assert_eq!(r.status(), 400);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["message"], "Image is corrupt");
    }
    let r = rmbg(&fake, rembg_form(picture(8, 8), "good.png", &[])).await;
    assert_eq!(r.status(), 200);
    create_job_id(&fake, picture(8, 8), "good.png").await;
    assert_eq!(fake.faults().len(), 1, "always-rules stay");
    assert_eq!(fake.charged_hashes().len(), 2);

    // a next-N rule for one file is only used up by that file
    fake.clear_faults();
    fake.inject(FaultRule::next(1, Fault::Status(503)).file_contains("x-"));
    assert_eq!(
        rmbg(&fake, rembg_form(picture(8, 8), "a.png", &[]))
            .await
            .status(),
        200
    );
    assert_eq!(
        rmbg(&fake, rembg_form(picture(8, 8), "x-1.png", &[]))
            .await
            .status(),
        503
    );
    assert_eq!(
        rmbg(&fake, rembg_form(picture(8, 8), "x-1.png", &[]))
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn probability_zero_never_fires() {
    let fake = start();
    fake.inject(FaultRule::always(Fault::Status(500)).probability(0.0));
    for _ in 0..5 {
        assert_eq!(me(&fake).await.status(), 200);
    }
    fake.update(|c| c.faults[0].probability = 1.0);
    assert_eq!(me(&fake).await.status(), 500);
}

#[tokio::test]
async fn request_log_and_double_charges() {
    let dir = std::env::temp_dir().join(format!("fake-provider-log-{}", std::process::id()));
    let _ = std::fs::remove_file(&dir);
    let fake = FakeProvider::start(Config {
        log_file: Some(dir.clone()),
        ..Config::default()
    });
    let pic = picture(8, 8);
    rmbg(&fake, rembg_form(pic.clone(), "a.png", &[])).await;
    rmbg(&fake, rembg_form(pic.clone(), "a-again.png", &[])).await;
    let id = create_job_id(&fake, picture(9, 9), "v.png").await;
    poll(&fake, &id).await;
    let log = fake.log();
    assert_eq!(log.len(), 4);
    assert!(log.windows(2).all(|w| w[0].seq < w[1].seq));
    assert!(log.iter().all(|e| e.at_system <= SystemTime::now()));
    assert_eq!(log[3].endpoint, Endpoint::VergingJobs);
    assert_eq!(log[3].api, Some(Api::Verging));
    assert_eq!(
        log[3].query.as_deref(),
        Some(format!("job_ids={id}").as_str())
    );
    assert_eq!(log[3].file_name.as_deref(), Some("v.png"));
    assert!(!log[3].charged);
    assert_eq!(fake.doubly_charged(), vec![sha(&pic)]);
    assert_eq!(fake.charged_count(Api::Rembg), 2);
    assert_eq!(fake.count_requests(Endpoint::VergingCreateJob), 1);

    let text = std::fs::read_to_string(&dir).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["path"], "/rmbg");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[0]["charged"], true);
    assert_eq!(lines[0]["image_sha256"], sha(&pic));
    assert_eq!(lines[2]["api"], "verging");
    fake.clear_log();
    assert!(fake.log().is_empty());
    let _ = std::fs::remove_file(&dir);
}

async fn load(fake: &FakeProvider, n: u32, concurrency: usize) {
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(concurrency));
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..n {
        let permit = sem.clone().acquire_owned().await.unwrap();
        let client = client.clone();
        let base_r = fake.base_url_rembg();
        let base_v = fake.base_url_verging();
        tasks.push(tokio::spawn(async move {
            let _p = permit;
            let pic = picture(8 + i % 5, 8 + i / 5 % 7);
            let r = if i % 2 == 0 {
                client
                    .post(format!("{base_r}/rmbg"))
                    .header("x-api-key", RKEY)
                    .multipart(rembg_form(pic, &format!("{i}.png"), &[]))
                    .send()
                    .await
            } else {
                client
                    .post(format!("{base_v}/background-removal/create-job"))
                    .header("Authorization", format!("ApiKey {VKEY}"))
                    .multipart(job_form(pic, &format!("{i}.png")))
                    .send()
                    .await
            };
            r.unwrap().status().as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert_eq!(fake.log().len(), n as usize);
    assert_eq!(fake.charged_count(Api::Rembg), n.div_ceil(2) as usize);
    assert_eq!(fake.charged_count(Api::Verging), (n / 2) as usize);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_requests_at_64_way_concurrency() {
    let fake = start();
    load(&fake, 1000, 64).await;
}

/// The benchmark's size: `cargo test -p fake-provider --release -- --ignored`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ten_thousand_requests_at_64_way_concurrency() {
    let fake = start();
    let t = Instant::now();
    load(&fake, 10_000, 64).await;
    eprintln!("10k requests in {:?}", t.elapsed());
}

#[tokio::test]
async fn stop_closes_the_port() {
    let fake = start();
    let addr = fake.addr();
    assert_eq!(me(&fake).await.status(), 200);
    let clone = fake.clone();
    clone.stop();
    fake.stop(); // idempotent
    assert!(TcpStream::connect(addr).is_err());
    drop(fake);
    drop(clone);
    // dropping the last handle stops too
    let other = start();
    let addr = other.addr();
    drop(other);
    assert!(TcpStream::connect(addr).is_err());
}
