//! Fencing through the pipeline of the real binary, on a real PostgreSQL
//! (tests/support/postgres.rs; skipped with the reason where it cannot
//! start): two `cutout run` instances share one inbox; the first is frozen
//! (SIGSTOP) while its picture is at the fake provider, the second takes
//! the job over once the lease lapses and finishes it, and the first, woken
//! (SIGCONT), must leave it alone: no output, no audit line, no move; in
//! batch mode (`cutout process`) the file counts as skipped, not failed.
//!
//! Must not: assert durations (waits are guards against a hang).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use fake_provider::{Config, Endpoint, FakeProvider, Fault, FaultRule};
use support::postgres::{start_or_skip, PASSWORD};
use support::{read_jsonl, wait_until, Daemon, Site};

const LONG: Duration = Duration::from_secs(90);

/// The config of instance `id` on the shared folders of `site`.
fn instance_config(site: &Site, id: &str, url: &str, fake: &FakeProvider) -> PathBuf {
    let text = format!(
        "state_dir = \"state-{id}\"\nshutdown_grace = \"20s\"\n\
         [retry]\ninitial_delay = \"50ms\"\nmax_delay = \"500ms\"\n\
         [state]\nurl = \"{url}\"\npassword_file = \"pg-password\"\ninstance = \"{id}\"\nlease = \"2s\"\n\
         [[inbox]]\npath = \"inbox\"\nsettle = \"200ms\"\nwatch = \"poll\"\npoll_interval = \"300ms\"\nprovider = \"r\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\nrequests_per_second = 50\nconcurrency = 2\n\
         timeout = \"120s\"\nrecheck_interval = \"200ms\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
    );
    let p = site.root().join(format!("cutout-{id}.toml"));
    std::fs::write(&p, text).expect("config");
    p
}

/// `cutout run` with `config` (stderr to a log file beside it).
fn start(site: &Site, id: &str, config: &Path) -> Daemon {
    start_cmd(site, id, config, "run")
}

/// `cutout <cmd>` with `config`: stdout and stderr to one log file beside
/// it.
fn start_cmd(site: &Site, id: &str, config: &Path, cmd: &str) -> Daemon {
    let log = site.root().join(format!("daemon-{id}.log"));
    let f = std::fs::File::create(&log).expect("log file");
    let out = f.try_clone().expect("log file");
    let child = Command::new(support::bin())
        .args([cmd, "--config"])
        .arg(config)
        .current_dir(site.root())
        .env_remove("CUTOUT_CONFIG")
        .env("CUTOUT_MODELS_DIR", site.root().join("models"))
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(f)
        .spawn()
        .expect("spawn cutout run");
    Daemon { child, log }
}

/// (owner, outcome, active) of the job for `rel`, read from the database.
fn job_row(url: &str, rel: &str) -> Option<(Option<String>, Option<String>, bool)> {
    let mut cfg: postgres::Config = url.parse().expect("url");
    cfg.password(PASSWORD);
    let mut c = cfg.connect(postgres::NoTls).ok()?;
    let row = c
        .query_opt(
            "SELECT owner, outcome, active FROM jobs WHERE rel_path = $1 ORDER BY id DESC LIMIT 1",
            &[&rel.as_bytes()],
        )
        .ok()??;
    Some((row.get(0), row.get(1), row.get(2)))
}

fn succeeded_lines(site: &Site, id: &str, input: &str) -> usize {
    read_jsonl(&site.root().join(format!("state-{id}/audit-{id}.jsonl")))
        .iter()
        .filter(|r| r["event"] == "succeeded" && r["input"] == input)
        .count()
}

/// SIGSTOP instance a while it holds a job at the fake provider; b takes
/// the job over after the lease and finishes it; SIGCONT a: the input ends
/// in exactly one place with one output and one `succeeded` line across
/// both audit files, and a says it left the job to the other instance.
#[test]
fn a_paused_instance_woken_after_a_takeover_leaves_the_job_to_the_new_holder() {
    let Some(pg) = start_or_skip("a_paused_instance_woken_after_a_takeover") else {
        return;
    };
    let url = pg.create_db("fencing_pipeline");
    let fake = FakeProvider::start(Config::default());
    // The first upload of f.jpg is held at the fake long after it arrived;
    // the rule is used up when the request arrives, which tells the test
    // that instance a is mid-call.
    fake.inject(
        FaultRule::next(1, Fault::Delay(Duration::from_secs(8)))
            .endpoint(Endpoint::RembgRemove)
            .file_contains("f.jpg"),
    );
    let site = Site::new("");
    std::fs::write(site.root().join("pg-password"), format!("{PASSWORD}\n")).expect("pw");
    std::fs::write(site.root().join("rembg.key"), "test-rembg-key\n").expect("key");
    let (conf_a, conf_b) = (
        instance_config(&site, "a", &url, &fake),
        instance_config(&site, "b", &url, &fake),
    );
    let mut a = start(&site, "a", &conf_a);
    site.drop_file("f.jpg", &support::jpeg(320, 240, 7));
    wait_until(LONG, "instance a's upload to arrive at the fake", || {
        fake.config().faults.is_empty()
    });
    assert_eq!(
        job_row(&url, "f.jpg").and_then(|r| r.0).as_deref(),
        Some("a"),
        "a holds the job while its upload is at the fake"
    );
    a.signal(libc::SIGSTOP);

    let mut b = start(&site, "b", &conf_b);
    wait_until(
        LONG,
        "instance b to take the job over and finish it",
        || succeeded_lines(&site, "b", "f.jpg") == 1,
    );
    a.signal(libc::SIGCONT);
    wait_until(LONG, "instance a to say it left the job to b", || {
        a.log_text().contains("took this job over")
    });
    // What a would do next (output, audit line, move) would follow its
    // fenced write at once; stopping both lets everything settle.
    a.term();
    b.term();
    a.wait(LONG);
    b.wait(LONG);

    let (log_a, log_b) = (a.log_text(), b.log_text());
    let both = || format!("a:\n{log_a}\nb:\n{log_b}");
    assert!(
        log_a.contains("another instance took this job over; leaving it to them"),
        "{}",
        both()
    );
    assert_eq!(
        site.files(&site.inbox()),
        Vec::<String>::new(),
        "{}",
        both()
    );
    assert_eq!(site.files(&site.archive()), vec!["f.jpg"], "{}", both());
    assert_eq!(site.files(&site.failed()), Vec::<String>::new());
    assert_eq!(site.files(&site.rejected()), Vec::<String>::new());
    let outbox = site.files(&site.outbox());
    assert_eq!(
        outbox.len(),
        1,
        "one output for f.jpg: {outbox:?}\n{}",
        both()
    );
    support::assert_cutout(&site.outbox().join(&outbox[0]));
    assert_eq!(succeeded_lines(&site, "b", "f.jpg"), 1);
    assert_eq!(succeeded_lines(&site, "a", "f.jpg"), 0, "{}", both());
    let a_lines = read_jsonl(&site.root().join("state-a/audit-a.jsonl"));
    assert!(
        a_lines.iter().all(|r| r["input"] != "f.jpg"),
        "a wrote no audit line for the job it lost: {a_lines:?}"
    );
    assert!(
        !log_a.contains("will look again") && !log_a.contains("giving up"),
        "the fenced job is no trouble for a:\n{log_a}"
    );
    let (owner, outcome, active) = job_row(&url, "f.jpg").expect("job row");
    assert_eq!(
        (owner.as_deref(), outcome.as_deref(), active),
        (Some("b"), Some("succeeded"), false)
    );
    // Both instances paid for it: only what was in flight is paid twice.
    let uploads = fake.count(|e| {
        e.endpoint == Endpoint::RembgRemove
            && e.file_name.as_deref().is_some_and(|f| f.contains("f.jpg"))
    });
    assert_eq!(uploads, 2, "one upload per instance");
}

/// The same in batch mode: `cutout process` frozen mid-call loses the job
/// to a `cutout run` instance; woken, it ends its batch with the file
/// counted as skipped (not failed, not left after errors) and exit 0.
#[test]
fn a_paused_batch_run_counts_the_job_it_lost_as_skipped_not_failed() {
    let Some(pg) = start_or_skip("a_paused_batch_run_counts_the_job_it_lost") else {
        return;
    };
    let url = pg.create_db("fencing_batch");
    let fake = FakeProvider::start(Config::default());
    fake.inject(
        FaultRule::next(1, Fault::Delay(Duration::from_secs(8)))
            .endpoint(Endpoint::RembgRemove)
            .file_contains("g.jpg"),
    );
    let site = Site::new("");
    std::fs::write(site.root().join("pg-password"), format!("{PASSWORD}\n")).expect("pw");
    std::fs::write(site.root().join("rembg.key"), "test-rembg-key\n").expect("key");
    let (conf_a, conf_b) = (
        instance_config(&site, "a", &url, &fake),
        instance_config(&site, "b", &url, &fake),
    );
    site.drop_file("g.jpg", &support::jpeg(320, 240, 9));
    let mut a = start_cmd(&site, "a", &conf_a, "process");
    wait_until(LONG, "the batch's upload to arrive at the fake", || {
        fake.config().faults.is_empty()
    });
    a.signal(libc::SIGSTOP);
    let mut b = start(&site, "b", &conf_b);
    wait_until(
        LONG,
        "instance b to take the job over and finish it",
        || succeeded_lines(&site, "b", "g.jpg") == 1,
    );
    a.signal(libc::SIGCONT);
    let status = a.wait(LONG);
    b.term();
    b.wait(LONG);
    let log_a = a.log_text();
    assert_eq!(status.code(), Some(0), "{log_a}");
    assert!(log_a.contains("took this job over"), "{log_a}");
    assert!(
        log_a.contains("0 succeeded, 0 duplicates, 0 rejected, 0 failed, 1 skipped in"),
        "the batch's tally: {log_a}"
    );
    assert_eq!(site.files(&site.archive()), vec!["g.jpg"]);
    assert_eq!(site.files(&site.outbox()).len(), 1);
    assert_eq!(succeeded_lines(&site, "a", "g.jpg"), 0);
}
