//! The review page on the shared PostgreSQL state: two instances of the
//! real binary, one database (a real PostgreSQL through
//! `support::postgres`), one shared inbox (`watch = "poll"`), the fake
//! provider, each instance with its own `[http] listen` on a free port.
//! The page of EITHER instance lists every picture of both, its counts add
//! up to both audit files, `/p/ID` of a picture the other instance did
//! shows that instance's audit line, and a file of the other instance is
//! served only where it lies under this instance's folders.
//!
//! Skipped (with the reason) where PostgreSQL cannot be started.

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use fake_provider::{Config, FakeProvider};
use support::postgres::{start_or_skip, PASSWORD};
use support::*;

const KEY: &str = "test-rembg-key";
const LONG: Duration = Duration::from_secs(120);

/// (status, body) of one GET over a fresh connection.
fn get(addr: &str, path: &str) -> (u16, String) {
    request(addr, "GET", path, &[])
}

/// (status, body) of one request without a body.
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(LONG)).expect("timeout");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Content-Length: 0\r\n\r\n");
    s.write_all(req.as_bytes()).expect("send");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    (code, body.to_string())
}

fn page(addr: &str, path: &str) -> String {
    let (code, body) = get(addr, path);
    assert_eq!(code, 200, "{path}: {body}");
    body
}

/// (id, job, input) of every card on a grid page.
fn cards(html: &str) -> Vec<(i64, i64, String)> {
    let attr = |c: &str, name: &str| -> String {
        c.split(&format!("{name}=\""))
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap_or("")
            .to_string()
    };
    html.split("<article class=\"card")
        .skip(1)
        .map(|c| {
            let name = c.split("class=\"name\"").nth(1).unwrap_or("");
            (
                attr(c, "data-id").parse().unwrap_or(-1),
                attr(c, "data-job").parse().unwrap_or(-1),
                attr(name, "title"),
            )
        })
        .collect()
}

/// `data-count` of the element with `id`.
fn count_of(html: &str, id: &str) -> Option<u64> {
    let rest = &html[html.find(&format!("id=\"{id}\""))?..];
    rest.split("data-count=\"")
        .nth(1)?
        .split('"')
        .next()?
        .parse()
        .ok()
}

/// Instance `id`'s config: the shared folders, its own state folder and
/// HTTP port; instance `b` writes its cut-outs to its own `outbox-b`.
fn write_config(root: &Path, id: &str, url: &str, fake: &FakeProvider) {
    let base = fake.base_url_rembg();
    let outbox = if id == "b" {
        "outbox = \"outbox-b\"\n"
    } else {
        ""
    };
    let text = format!(
        "state_dir = \"state-{id}\"\nshutdown_grace = \"10s\"\n\
         [state]\nurl = \"{url}\"\npassword_file = \"pg-password\"\ninstance = \"{id}\"\nlease = \"3s\"\n\
         [http]\nlisten = \"127.0.0.1:0\"\nactions = true\n\
         [retry]\ninitial_delay = \"50ms\"\nmax_delay = \"500ms\"\n\
         [[inbox]]\npath = \"inbox\"\nwatch = \"poll\"\npoll_interval = \"300ms\"\n\
         settle = \"100ms\"\nprovider = \"r\"\n{outbox}\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{base}\"\n\
         usage_url = \"{base}/api/membership-usage\"\napi_key_file = \"rembg.key\"\n\
         concurrency = 4\ntimeout = \"20s\"\n"
    );
    std::fs::write(root.join(format!("cutout-{id}.toml")), text).expect("config");
}

fn spawn(root: &Path, id: &str) -> Daemon {
    let log = root.join(format!("daemon-{id}-{}.log", std::process::id()));
    let log = (1..)
        .map(|n| log.with_extension(format!("{n}.log")))
        .find(|p| !p.exists())
        .expect("a log name");
    let f = std::fs::File::create(&log).expect("log file");
    let child = std::process::Command::new(bin())
        .arg("run")
        .arg("--config")
        .arg(root.join(format!("cutout-{id}.toml")))
        .current_dir(root)
        .env_remove("CUTOUT_CONFIG")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("CREDENTIALS_DIRECTORY")
        .env("CUTOUT_MODELS_DIR", root.join("models"))
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn cutout run");
    Daemon { child, log }
}

/// Drop `names` into the shared inbox (hidden name, then rename); a name
/// starting with `bad` gets bytes that are no picture.
fn drop_all(root: &Path, names: &[String], seed: u32) {
    for (k, rel) in names.iter().enumerate() {
        let bytes = if rel.starts_with("bad") {
            b"this is not a picture at all".to_vec()
        } else {
            jpeg(64, 48, seed + k as u32)
        };
        let tmp = root.join("inbox").join(format!(".{rel}.part"));
        std::fs::write(&tmp, bytes).expect("write");
        std::fs::rename(&tmp, root.join("inbox").join(rel)).expect("rename");
    }
}

/// Every audit line of instance `id`.
fn audit_of(root: &Path, id: &str) -> Vec<serde_json::Value> {
    read_jsonl(&root.join(format!("state-{id}/audit-{id}.jsonl")))
}

/// Wait until both audit files together hold `n` outcome lines.
fn wait_outcomes(root: &Path, n: usize) {
    wait_until(LONG, &format!("{n} outcomes in the audit files"), || {
        ["a", "b"]
            .iter()
            .flat_map(|i| audit_of(root, i))
            .filter(|r| r["event"] != "retry")
            .count()
            >= n
    });
}

fn stop(mut d: Daemon) {
    d.term();
    assert!(d.wait(LONG).success(), "{}", d.log_text());
}

fn names(prefix: &str, n: usize, bad: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n).map(|k| format!("{prefix}{k:02}.jpg")).collect();
    v.extend((0..bad).map(|k| format!("bad-{prefix}{k}.jpg")));
    v
}

#[test]
fn the_review_page_of_either_instance_shows_every_instances_outcomes() {
    let Some(pg) = start_or_skip("the_review_page_of_either_instance") else {
        return;
    };
    let url = pg.create_db("review");
    let fake = FakeProvider::start(Config::default().with_key(KEY));
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    std::fs::write(root.join("pg-password"), format!("{PASSWORD}\n")).expect("pw");
    std::fs::write(root.join("rembg.key"), KEY).expect("key");
    std::fs::create_dir_all(root.join("inbox")).expect("inbox");
    write_config(root, "a", &url, &fake);
    write_config(root, "b", &url, &fake);

    // a alone, then b alone (so each surely has outcomes of its own),
    // then both at once on one more batch.
    let first = names("a", 5, 1);
    let d = spawn(root, "a");
    drop_all(root, &first, 1);
    wait_outcomes(root, 6);
    stop(d);
    let second = names("b", 5, 1);
    let d = spawn(root, "b");
    drop_all(root, &second, 100);
    wait_outcomes(root, 12);
    let db = d;
    let da = spawn(root, "a");
    let third = names("both", 12, 0);
    drop_all(root, &third, 200);
    let all: Vec<String> = [first, second, third].concat();
    wait_outcomes(root, all.len());

    let by_instance: BTreeMap<&str, Vec<serde_json::Value>> =
        ["a", "b"].iter().map(|i| (*i, audit_of(root, i))).collect();
    let lines: Vec<&serde_json::Value> = by_instance.values().flatten().collect();
    let count = |ev: &str| lines.iter().filter(|r| r["event"] == ev).count() as u64;
    assert_eq!(count("succeeded"), 22, "{lines:?}");
    assert_eq!(count("rejected"), 2, "{lines:?}");

    for (me, d) in [("a", &da), ("b", &db)] {
        let addr = support::metrics::listen_addr(d, LONG);
        // The audit file line comes a moment before the job's commit
        // (which fills the index): wait for the last commits.
        wait_until(LONG, "every outcome on the page", || {
            cards(&page(&addr, "/")).len() >= all.len()
        });
        let grid = page(&addr, "/");
        let on_page = cards(&grid);
        let mut shown: Vec<String> = on_page.iter().map(|c| c.2.clone()).collect();
        shown.sort();
        let mut want = all.clone();
        want.sort();
        assert_eq!(shown, want, "the grid of {me} lists every picture once");
        assert_eq!(count_of(&grid, "count-succeeded"), Some(22), "{me}");
        assert_eq!(count_of(&grid, "count-rejected"), Some(2), "{me}");
        // Filters and keyset pages run on the shared index too.
        let rejected = cards(&page(&addr, "/?outcome=rejected"));
        assert_eq!(rejected.len(), 2, "{me}: {rejected:?}");
        assert!(rejected.iter().all(|c| c.2.starts_with("bad-")));
        let named = cards(&page(&addr, "/?q=BOTH0"));
        assert_eq!(named.len(), 10, "{me}: name search: {named:?}");
        let oldest_shown = on_page.last().map(|c| c.0).expect("cards");
        let newest = on_page.first().map(|c| c.0).expect("cards");
        let older = cards(&page(&addr, &format!("/?before={newest}")));
        assert_eq!(older.len(), all.len() - 1, "{me}");
        assert_eq!(older.last().map(|c| c.0), Some(oldest_shown));

        // A picture the other instance did: its page shows that audit line.
        let other = if me == "a" { "b" } else { "a" };
        let theirs = by_instance[other]
            .iter()
            .find(|r| r["event"] == "succeeded")
            .expect("the other instance succeeded at something");
        let job = theirs["job"].as_i64().expect("job");
        let input = theirs["input"].as_str().expect("input");
        let (id, _, _) = on_page
            .iter()
            .find(|c| c.1 == job)
            .unwrap_or_else(|| panic!("{me}: no card of job {job}: {on_page:?}"))
            .clone();
        let p = unescape(&page(&addr, &format!("/p/{id}")));
        assert!(p.contains(&format!("\"job\": {job}")), "{me}: {p}");
        assert!(p.contains(input), "{me}: {p}");
        let output = theirs["output"].as_str().expect("output");
        assert!(p.contains(&json_escaped(output)), "{me}: {p}");
        // The original went to the shared archive: served by either.
        let (code, body) = get(&addr, &format!("/file/{id}/original"));
        assert_eq!(code, 200, "{me}: the shared archive: {body}");
        // a's cut-outs lie in outbox/, b's in outbox-b/: neither is a
        // folder of the other instance, which refuses them clearly.
        let (code, body) = get(&addr, &format!("/file/{id}/out0"));
        assert_eq!(code, 403, "{me}: another instance's outbox: {body}");
        assert!(body.contains("this instance"), "{me}: {body}");
        let (code, _) = get(&addr, &format!("/thumb/{id}/out0"));
        assert_eq!(code, 403, "{me}");
        // Its own cut-outs it serves.
        let mine = by_instance[me]
            .iter()
            .find(|r| r["event"] == "succeeded")
            .and_then(|r| r["job"].as_i64())
            .expect("a success of its own");
        let (own, _, _) = on_page
            .iter()
            .find(|c| c.1 == mine)
            .expect("own card")
            .clone();
        let (code, body) = get(&addr, &format!("/file/{own}/out0"));
        assert_eq!(code, 200, "{me}: its own cut-out: {body}");
        // Approve and flag work on the shared state, from either page;
        // retry (and redo, confirm) are refused clearly.
        let log = d.log_text();
        assert!(
            log.contains("`[http] actions` on the shared PostgreSQL state"),
            "{log}"
        );
        let session: serde_json::Value =
            serde_json::from_str(&page(&addr, "/api/session")).expect("session");
        let csrf = session["csrf"].as_str().expect("csrf").to_string();
        let post = |path: &str| {
            request(
                &addr,
                "POST",
                path,
                &[("X-Cutout-Csrf", &csrf), ("X-Cutout-User", me)],
            )
        };
        let verb = if me == "a" { "approve" } else { "flag" };
        let (code, body) = post(&format!("/api/jobs/{job}/{verb}"));
        assert_eq!(code, 200, "{me}: {verb} job {job} of {other}: {body}");
        let bad = by_instance[other]
            .iter()
            .find(|r| r["event"] == "rejected")
            .expect("a rejection of the other instance");
        let (bad_job, bad_at) = (
            bad["job"].as_i64().expect("job"),
            bad["moved_to"].as_str().expect("moved_to"),
        );
        let (code, body) = post(&format!("/api/jobs/{bad_job}/retry"));
        assert_eq!(code, 409, "{me}: {body}");
        assert!(body.contains("shared-state"), "{me}: {body}");
        assert!(
            Path::new(bad_at).exists(),
            "the refused retry moved nothing"
        );
    }
    // Each instance's mark, seen from the other instance's page and by
    // `cutout status`.
    let job_of = |who: &str| {
        by_instance[who]
            .iter()
            .find(|r| r["event"] == "succeeded")
            .and_then(|r| r["job"].as_i64())
            .expect("a success")
    };
    let (ja, jb) = (job_of("a"), job_of("b"));
    let addr_a = support::metrics::listen_addr(&da, LONG);
    let marks = page(&addr_a, &format!("/api/marks?jobs={ja},{jb}"));
    let marks: serde_json::Value = serde_json::from_str(&marks).expect("marks");
    assert_eq!(
        marks["marks"],
        serde_json::json!({ ja.to_string(): "flagged", jb.to_string(): "approved" }),
        "a's page sees b's flag of a's job and its own approval of b's"
    );
    let status = std::process::Command::new(bin())
        .arg("status")
        .arg("--config")
        .arg(root.join("cutout-a.toml"))
        .current_dir(root)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(text.contains(&format!("(job {ja}) by b")), "{text}");
    assert!(text.contains(&format!("(job {jb}) by a")), "{text}");
    stop(da);
    stop(db);
}

/// HTML text as plain text (the entities maud writes).
fn unescape(html: &str) -> String {
    html.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// `s` as it appears inside a JSON string.
fn json_escaped(s: &str) -> String {
    let q = serde_json::to_string(s).expect("json");
    q[1..q.len() - 1].to_string()
}

/// The index on the database itself: 10,000 audit rows (two instances)
/// become 10,000 outcomes through the trigger, once each; a record that is
/// not JSON neither fails its insert nor shows; the reader's queries
/// (keyset pages, filters, counts, one entry, history, names) answer from
/// the shared index through indexes, not scans of `outcomes`; and an
/// upgrade from schema 1 fills the index from the rows `audit` held.
#[test]
fn the_shared_index_is_filled_once_from_the_audit_table_and_read_through_indexes() {
    use cutout::store::{PgOptions, ReviewFilter, ReviewReader, Store};
    let Some(pg) = start_or_skip("the_shared_index_is_filled_once") else {
        return;
    };
    let url = pg.create_db("index");
    let opts = |id: &str| PgOptions {
        url: url.clone(),
        password: Some(PASSWORD.into()),
        instance: id.into(),
        lease: Duration::from_secs(5),
        connections: 1,
    };
    let store = Store::open_postgres(&opts("t1")).expect("open the shared state");
    let mut admin = ::postgres::Config::new();
    admin
        .host("127.0.0.1")
        .port(pg.port)
        .user(support::postgres::USER)
        .password(PASSWORD)
        .dbname("index");
    let mut db = admin.connect(::postgres::NoTls).expect("connect");
    let n = 10_000;
    db.batch_execute(&format!(
        "INSERT INTO jobs (id, inbox, rel_path, created_ms, updated_ms, active)
           SELECT g, 'in' || (g % 3), convert_to('p' || g || '.jpg', 'UTF8'), 0, 0, FALSE
             FROM generate_series(1, {n} + 1) g;
         INSERT INTO audit (job_id, instance, record)
           SELECT g, CASE WHEN g % 2 = 0 THEN 'a' ELSE 'b' END, json_build_object(
             'ts', to_char(TIMESTAMP '2026-01-01' + g * INTERVAL '1 minute',
                           'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),
             'event', CASE WHEN g % 10 = 0 THEN 'failed' ELSE 'succeeded' END,
             'job', g, 'inbox', 'in' || (g % 3), 'input', 'p' || g || '.jpg',
             'provider', CASE WHEN g % 2 = 0 THEN 'r' ELSE 'local' END,
             'code', CASE WHEN g % 10 = 0 THEN 'provider-timeout' END,
             'bytes', 1000 + g, 'output', '/o/p' || g || '.png')::TEXT
             FROM generate_series(1, {n}) g;
         INSERT INTO audit (job_id, instance, record) VALUES ({n} + 1, 'a', 'not json');
         INSERT INTO audit (job_id, instance, record) VALUES (1, 'b', '{{}}')
           ON CONFLICT (job_id) DO NOTHING;
         ANALYZE outcomes; ANALYZE outcome_lines;"
    ))
    .expect("audit rows (a record that is not JSON does not fail its insert)");
    let count = |db: &mut ::postgres::Client, sql: &str| -> i64 {
        db.query_one(sql, &[]).expect(sql).get(0)
    };

    let reader = ReviewReader::for_store(&store, Path::new("/nonexistent"));
    let scans = |db: &mut ::postgres::Client| -> (i64, i64) {
        let r = db
            .query_one(
                "SELECT seq_scan, COALESCE(idx_scan, 0) FROM pg_stat_user_tables
                  WHERE relname = 'outcomes'",
                &[],
            )
            .expect("stats");
        (r.get(0), r.get(1))
    };
    let before = scans(&mut db);
    let all = ReviewFilter::default();
    let failed = ReviewFilter {
        event: Some("failed".into()),
        ..Default::default()
    };
    let in1 = ReviewFilter {
        inbox: Some("in1".into()),
        ..Default::default()
    };
    let t = std::time::Instant::now();
    let first = reader.page(&all, None, 48).expect("page");
    let took = t.elapsed();
    assert_eq!(first.len(), 48);
    assert_eq!(first[0].job, n, "newest first");
    assert!(first.windows(2).all(|w| w[0].id > w[1].id));
    let next = reader
        .page(&all, first.last().map(|e| e.id), 48)
        .expect("next page");
    assert_eq!(next.len(), 48);
    assert!(next[0].id < first[47].id);
    let f = reader.page(&failed, None, 48).expect("failed page");
    assert_eq!(f.len(), 48);
    assert!(f.iter().all(|e| e.event == "failed" && e.job % 10 == 0));
    assert_eq!(f[0].code.as_deref(), Some("provider-timeout"));
    let i = reader.page(&in1, None, 48).expect("inbox page");
    assert!(i.iter().all(|e| e.inbox == "in1" && e.job % 3 == 1));
    let newer = reader.newer(&all, n - 10, 100).expect("newer");
    assert_eq!(newer.len(), 10);
    assert_eq!(reader.newest().expect("newest"), first[0].id);
    // The statistics reach the view within a second or so.
    wait_until(LONG, "the page queries in the statistics", || {
        scans(&mut db).1 >= before.1 + 6
    });
    let after = scans(&mut db);
    assert_eq!(
        after.0, before.0,
        "a page query scanned the whole outcomes table"
    );

    assert_eq!(count(&mut db, "SELECT COUNT(*) FROM outcomes"), n);
    assert_eq!(count(&mut db, "SELECT COUNT(*) FROM outcome_lines"), n);
    assert_eq!(
        count(&mut db, "SELECT COUNT(DISTINCT job) FROM outcomes"),
        n,
        "one outcome per audit row"
    );
    let counts = reader.counts(&all).expect("counts");
    assert_eq!(
        counts,
        vec![
            ("failed".to_string(), n / 10),
            ("succeeded".to_string(), n - n / 10)
        ]
    );
    let day = ReviewFilter {
        from_ms: Some(1_767_225_600_000),            // 2026-01-01
        to_ms: Some(1_767_225_600_000 + 86_400_000), // + a day
        name: Some("P1".into()),
        ..Default::default()
    };
    let dc = reader.counts(&day).expect("counts of a day");
    let total: i64 = dc.iter().map(|(_, c)| c).sum();
    // Minutes 1..1439 of the day whose input starts with p1 (1, 10-19,
    // 100-199, 1000-1439): 1 + 10 + 100 + 440.
    assert_eq!(total, 551, "{dc:?}");
    let one = reader.entry(first[0].id).expect("entry").expect("found");
    let line: serde_json::Value = serde_json::from_str(&one.line).expect("the whole line");
    assert_eq!(line["job"], n, "{}", one.line);
    let history = reader.history(&one).expect("history");
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].id, one.id);
    let (inboxes, providers) = reader.names().expect("names");
    assert_eq!(inboxes, ["in0", "in1", "in2"]);
    assert_eq!(providers, ["local", "r"]);
    eprintln!("REVIEW-PG first page of {n} outcomes: {took:?}");
    let t = std::time::Instant::now();
    for _ in 0..20 {
        reader.page(&all, None, 48).expect("page");
        reader.counts(&all).expect("counts");
    }
    eprintln!(
        "REVIEW-PG grid (page + counts) of {n} outcomes, mean of 20: {:?}",
        t.elapsed() / 20
    );

    // Many page requests at once share at most 4 read connections (beside
    // the store's pool of 1 and its heartbeat), sampled while they run.
    let done = std::sync::atomic::AtomicBool::new(false);
    let most = std::thread::scope(|sc| {
        let watcher = sc.spawn(|| {
            let mut c = admin.connect(::postgres::NoTls).expect("connect");
            let mut most = 0;
            while !done.load(std::sync::atomic::Ordering::SeqCst) {
                most = most.max(count(
                    &mut c,
                    "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'cutout'",
                ));
            }
            most
        });
        let workers: Vec<_> = (0..16)
            .map(|_| {
                sc.spawn(|| {
                    for _ in 0..20 {
                        assert_eq!(reader.page(&all, None, 48).expect("page").len(), 48);
                    }
                })
            })
            .collect();
        for w in workers {
            w.join().expect("worker");
        }
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        watcher.join().expect("watcher")
    });
    assert!(most <= 2 + 4, "{most} connections of cutout at once");

    // An upgrade from schema 1 with audit rows: the migration indexes them.
    db.batch_execute(
        "DROP TRIGGER audit_indexed ON audit; DROP TABLE marks;
         DROP FUNCTION cutout_audit_indexed(); DROP FUNCTION cutout_index_outcome(TEXT, TEXT);
         DROP TABLE outcome_lines; DROP TABLE outcomes;
         UPDATE schema_version SET version = 1;",
    )
    .expect("back to schema 1");
    drop(store);
    let again = Store::open_postgres(&opts("t2")).expect("open and migrate");
    assert_eq!(count(&mut db, "SELECT COUNT(*) FROM outcomes"), n);
    assert_eq!(
        count(
            &mut db,
            "SELECT MIN(job) FROM outcomes WHERE id = (SELECT MIN(id) FROM outcomes)"
        ),
        1,
        "backfilled oldest first"
    );
    drop(again);
}
