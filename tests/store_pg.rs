//! The state store against both backends: one behaviour suite run on
//! SQLite (a temp folder) and on a real PostgreSQL (tests/support/postgres),
//! then what only the shared store does: claim races between two instances,
//! takeover after a killed instance's lease expires (the remote job kept),
//! fencing of a paused-then-woken instance (SIGSTOP/SIGCONT of a real
//! process) and the questions the pipeline asks about it (`check_held`,
//! `finished_elsewhere`), the audit table, the instance list and the connection checks.
//!
//! The instance killed or paused is this test binary run again as a child
//! (`child_instance`, driven over stdin), so it is a real process with its
//! own connections and heartbeat thread.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

use cutout::job::{Code, Outcome};
use cutout::store::{Audit, Claim, ClaimRequest, Naming, PgOptions, Store, StoreError};
use support::postgres::{start_or_skip, PASSWORD};
use support::wait_until;

fn wait<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(f)
}

fn req(rel: &str, sha: &str, output: Option<Naming>) -> ClaimRequest {
    ClaimRequest {
        inbox: "in".into(),
        rel: Path::new(rel).into(),
        sha256: sha.to_string(),
        size: 10,
        mtime_ns: 1,
        provider: "p".into(),
        kept_in_place: false,
        output,
    }
}

fn naming(dir: &Path, name: &str) -> Naming {
    Naming {
        base: dir.join(name),
        candidate: cutout::fsutil::numbered,
        also_free: |_| true,
        all_names: None,
    }
}

fn claim(s: &Store, rel: &str, sha: &str) -> Claim {
    wait(s.claim(req(rel, sha, None))).expect("claim")
}

fn opts(url: &str, instance: &str, lease_ms: u64) -> PgOptions {
    PgOptions {
        url: url.to_string(),
        password: Some(PASSWORD.to_string()),
        instance: instance.to_string(),
        lease: Duration::from_millis(lease_ms),
        connections: 4,
    }
}

fn succeed_with_output(s: &Store, id: i64, out: &Path) {
    std::fs::write(out, b"x").expect("write");
    let out = Some(out.to_path_buf());
    wait(
        s.decide(id, Outcome::Succeeded, out, None, None, None, |_| {
            Ok("{\"outcome\":\"succeeded\"}".into())
        }),
    )
    .expect("decide");
    s.finish(id, Audit::Written).expect("finish");
}

// --- the shared suite: the same behaviour on both backends ---------------

/// New → resume → busy under another name → duplicate once it succeeded;
/// an interrupted duplicate comes back as a duplicate.
fn suite_claims(s: &Store, dir: &Path) {
    let Claim::New(a) = claim(s, "a.jpg", "h1") else {
        panic!("expected New");
    };
    assert!(matches!(claim(s, "a.jpg", "h1"), Claim::Resume(j) if j.id == a.id));
    assert!(matches!(claim(s, "b.jpg", "h1"), Claim::Busy));
    succeed_with_output(s, a.id, &dir.join("a.png"));
    let b = match claim(s, "b.jpg", "h1") {
        Claim::Duplicate { job, earlier } => {
            assert_eq!(earlier.id, a.id);
            job
        }
        other => panic!("expected Duplicate, got {other:?}"),
    };
    match claim(s, "b.jpg", "h1") {
        Claim::Duplicate { job, earlier } => assert_eq!((job.id, earlier.id), (b.id, a.id)),
        other => panic!("expected Duplicate again, got {other:?}"),
    }
}

/// A withdrawn rejection is neither counted as rejected, listed, nor
/// recovered; an audited one stands.
fn suite_withdraw(s: &Store) {
    let rejected = |rel: &str| {
        let j =
            wait(s.insert_untracked("in", Path::new(rel), None, Some(0), Some(1))).expect("insert");
        let why = Some("0 bytes".to_string());
        wait(s.decide(
            j.id,
            Outcome::Rejected,
            None,
            Some(Code::EmptyFile),
            why,
            None,
            |_| Ok("{}".into()),
        ))
        .expect("decide");
        j.id
    };
    let (a, b) = (rejected("w1.jpg"), rejected("w2.jpg"));
    s.withdraw(a).expect("withdraw");
    s.finish(b, Audit::Written).expect("finish");
    s.withdraw(b).expect("withdraw");
    let counts = s.counts().expect("counts");
    let n = |k: &str| counts.iter().find(|(o, _)| o == k).map(|(_, n)| *n);
    assert_eq!((n("rejected"), n("withdrawn")), (Some(1), Some(1)));
    let errors: Vec<i64> = s
        .last_errors(10)
        .expect("errors")
        .iter()
        .map(|j| j.id)
        .collect();
    assert_eq!(errors, vec![b]);
    assert!(s.decided_unfinished().expect("unfinished").is_empty());
    let ja = s.get(a).expect("get").expect("row");
    assert_eq!(
        (ja.outcome, ja.active, ja.record),
        (Some(Outcome::Withdrawn), false, None)
    );
}

/// 32 threads claim 32 files at once: all new, each with its own reserved
/// output and first attempt, all durable for the next open.
fn suite_concurrent(open: &dyn Fn() -> Store, dir: &Path) {
    let s = open();
    let out = dir.join("out");
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let (s, out) = (s.clone(), out.clone());
            std::thread::spawn(move || {
                let r = req(
                    &format!("c{i}.jpg"),
                    &format!("hc{i}"),
                    Some(naming(&out, "same.png")),
                );
                match wait(s.claim(r)).expect("claim") {
                    Claim::New(j) => j,
                    other => panic!("expected New, got {other:?}"),
                }
            })
        })
        .collect();
    let jobs: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    drop(s);
    let s = open();
    let mut names: Vec<PathBuf> = Vec::new();
    for j in &jobs {
        let row = s.get(j.id).expect("get").expect("row");
        assert_eq!((row.attempts, &row.output), (1, &j.output));
        names.extend(row.output);
    }
    names.sort();
    names.dedup();
    assert_eq!(names.len(), 32, "every claim reserved its own output name");
    let undecided: Vec<i64> = s
        .undecided()
        .expect("undecided")
        .iter()
        .map(|j| j.id)
        .collect();
    assert!(
        jobs.iter().all(|j| undecided.contains(&j.id)),
        "{undecided:?}"
    );
}

/// A name is reserved only when every output name that goes with it is
/// free (here `g.png` + `g.webp`, and `g.webp` is already on disk); the
/// earlier success of a content is listed while its output exists.
fn suite_all_names(s: &Store, dir: &Path) {
    std::fs::write(dir.join("g.webp"), b"user's file").expect("write");
    let group = Naming {
        all_names: Some(std::sync::Arc::new(|_: &str, _: &Path, p: &Path| {
            vec![p.to_path_buf(), p.with_extension("webp")]
        })),
        ..naming(dir, "g.png")
    };
    let Claim::New(g) = wait(s.claim(req("g.jpg", "h-group", Some(group)))).expect("claim") else {
        panic!("expected New");
    };
    assert_eq!(g.output.as_deref(), Some(dir.join("g-2.png").as_path()));
    let earlier = wait(s.successes("h1", 5)).expect("successes");
    assert_eq!(
        earlier
            .iter()
            .map(|j| j.rel_path.clone())
            .collect::<Vec<_>>(),
        vec![PathBuf::from("a.jpg")]
    );
}

/// One instance alone: its jobs stay held, and an input gone under a move
/// just vanished (nobody else finished it), before and after the job ends.
fn suite_elsewhere(s: &Store, dir: &Path) {
    let Claim::New(j) = claim(s, "gone.jpg", "hgone") else {
        panic!("new job")
    };
    s.check_held(j.id).expect("held");
    assert_eq!(s.get_held(j.id).expect("held").map(|g| g.id), Some(j.id));
    wait(s.still_held(j.id)).expect("held");
    assert_eq!(s.finished_elsewhere(j.id).expect("ask"), None);
    succeed_with_output(s, j.id, &dir.join("gone.png"));
    assert_eq!(s.finished_elsewhere(j.id).expect("ask"), None);
}

fn suite(open: &dyn Fn() -> Store, dir: &Path) {
    let s = open();
    suite_elsewhere(&s, dir);
    suite_claims(&s, dir);
    suite_all_names(&s, dir);
    suite_withdraw(&s);
    drop(s);
    suite_concurrent(open, dir);
}

#[test]
fn the_store_suite_passes_on_sqlite() {
    let d = tempfile::tempdir().expect("tempdir");
    let state = d.path().join("state");
    suite(&|| Store::open(&state).expect("open"), d.path());
}

#[test]
fn the_store_suite_passes_on_postgres() {
    let Some(pg) = start_or_skip("the_store_suite_passes_on_postgres") else {
        return;
    };
    let url = pg.create_db("suite");
    let d = tempfile::tempdir().expect("tempdir");
    suite(
        &|| Store::open_postgres(&opts(&url, "one", 10_000)).expect("open"),
        d.path(),
    );
}

// --- only the shared store ------------------------------------------------

/// Two instances (two handles, each with its own pool) race for the same
/// 40 files from 8 threads each: every file is taken exactly once.
#[test]
fn two_instances_racing_take_each_file_exactly_once() {
    let Some(pg) = start_or_skip("two_instances_racing_take_each_file_exactly_once") else {
        return;
    };
    let url = pg.create_db("race");
    let a = Store::open_postgres(&opts(&url, "a", 10_000)).expect("open a");
    let b = Store::open_postgres(&opts(&url, "b", 10_000)).expect("open b");
    let threads: Vec<_> = [a.clone(), b.clone()]
        .into_iter()
        .flat_map(|s| (0..8).map(move |t| (s.clone(), t)))
        .map(|(s, t)| {
            std::thread::spawn(move || {
                let mut won = Vec::new();
                for k in 0..40 {
                    // Half the files share their content with another path.
                    let (rel, sha) = ((k + t) % 40, ((k + t) % 40) / 2);
                    match wait(s.claim(req(&format!("r{rel}.jpg"), &format!("s{sha}"), None))) {
                        Ok(Claim::New(j)) => {
                            won.push((s.instance().map(str::to_string), j.id, rel))
                        }
                        Ok(Claim::Busy | Claim::Resume(_)) => {}
                        other => panic!("unexpected {other:?}"),
                    }
                }
                won
            })
        })
        .collect();
    let won: Vec<_> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    // One picture per content: 20 contents, each taken once, by one path.
    let mut contents: Vec<_> = won.iter().map(|(_, _, rel)| rel / 2).collect();
    contents.sort_unstable();
    assert_eq!(contents, (0..20).collect::<Vec<_>>(), "won: {won:?}");
    let held: i64 = a
        .instances()
        .expect("instances")
        .iter()
        .map(|i| i.jobs_held)
        .sum();
    assert_eq!(held, 20);
}

/// The child side of the process tests: opens the store as instance `a`
/// and obeys lines on stdin, answering one line each.
#[test]
fn child_instance() {
    let Ok(url) = std::env::var("CUTOUT_PG_CHILD_URL") else {
        return;
    };
    let lease: u64 = std::env::var("CUTOUT_PG_CHILD_LEASE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let s = Store::open_postgres(&opts(&url, "a", lease)).expect("child open");
    // Straight to the pipe: the test harness may capture `println!`.
    let say = |line: &str| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "@@ {line}");
        let _ = out.flush();
    };
    say("ready");
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("stdin");
        let w: Vec<&str> = line.split(' ').collect();
        let answer = match w.as_slice() {
            ["claim", rel, sha] => match claim(&s, rel, sha) {
                Claim::New(j) => format!("new {}", j.id),
                other => format!("other {other:?}"),
            },
            ["remote", id, r] => {
                format!("{:?}", wait(s.set_remote_job(id.parse().expect("id"), r)))
            }
            ["get_held", id] => match s.get_held(id.parse().expect("id")) {
                Ok(j) => format!("Ok({:?})", j.map(|j| j.id)),
                Err(e) => format!("{e:?}"),
            },
            ["check", id] => format!("{:?}", s.check_held(id.parse().expect("id"))),
            ["elsewhere", id] => format!("{:?}", s.finished_elsewhere(id.parse().expect("id"))),
            ["finish", id] => match s.finish(id.parse().expect("id"), Audit::Written) {
                Ok(()) => "ok".into(),
                Err(StoreError::Fenced { holder, .. }) => format!("fenced by {holder}"),
                Err(e) => format!("error {e}"),
            },
            _ => format!("unknown {line}"),
        };
        say(&answer);
    }
}

struct ChildInstance {
    child: Child,
    stdin: ChildStdin,
    /// The child's stdout lines, read by a thread (so a silent child
    /// fails the test instead of hanging it).
    lines: std::sync::mpsc::Receiver<String>,
}

impl ChildInstance {
    fn start(url: &str, lease_ms: u64) -> ChildInstance {
        let mut child = Command::new(std::env::current_exe().expect("exe"))
            .args([
                "child_instance",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("CUTOUT_PG_CHILD_URL", url)
            .env("CUTOUT_PG_CHILD_LEASE_MS", lease_ms.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Answers are marked: libtest prints its own text around them.
                let Some((_, answer)) = line.split_once("@@ ") else {
                    continue;
                };
                if tx.send(answer.trim().to_string()).is_err() {
                    return;
                }
            }
        });
        let c = ChildInstance {
            child,
            stdin,
            lines,
        };
        assert_eq!(c.next(), "ready");
        c
    }

    /// The child's next line (a guard against a hang, not a timing goal).
    fn next(&self) -> String {
        self.lines
            .recv_timeout(Duration::from_secs(60))
            .expect("the child instance answers")
    }

    fn ask(&mut self, cmd: &str) -> String {
        writeln!(self.stdin, "{cmd}").expect("write");
        self.stdin.flush().expect("flush");
        self.next()
    }

    /// Have the child claim `rel` (content `sha`) as a new job; its id.
    fn claim_new(&mut self, rel: &str, sha: &str) -> i64 {
        let answer = self.ask(&format!("claim {rel} {sha}"));
        answer
            .strip_prefix("new ")
            .and_then(|id| id.parse().ok())
            .unwrap_or_else(|| panic!("the child's claim of {rel}: {answer}"))
    }

    fn signal(&self, sig: libc::c_int) {
        // SAFETY: our own child's pid.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, sig) };
        assert_eq!(rc, 0, "kill({sig})");
    }
}

impl Drop for ChildInstance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Claim `rel` from instance b until it is no longer Busy (the lease of its
/// holder lapsed), within `limit`.
fn claim_when_free(b: &Store, rel: &str, sha: &str, limit: Duration) -> Claim {
    let mut got = None;
    wait_until(limit, "the job to be taken over", || {
        match claim(b, rel, sha) {
            Claim::Busy => false,
            other => {
                got = Some(other);
                true
            }
        }
    });
    got.expect("claimed")
}

/// kill -9 of the instance holding a paid job: another takes the job over
/// once the lease lapses, with its remote job (no second payment), and the
/// killed instance may come back under its id at once.
#[test]
fn a_killed_instances_job_is_taken_over_after_its_lease_with_its_remote_job() {
    let Some(pg) = start_or_skip("a_killed_instances_job_is_taken_over") else {
        return;
    };
    let url = pg.create_db("takeover");
    let mut a = ChildInstance::start(&url, 1500);
    let id = a.claim_new("k.jpg", "hk");
    assert_eq!(a.ask(&format!("remote {id} R-42")), "Ok(())");
    let b = Store::open_postgres(&opts(&url, "b", 1500)).expect("open b");
    assert!(
        matches!(claim(&b, "k.jpg", "hk"), Claim::Busy),
        "a live holder keeps its job"
    );
    a.signal(libc::SIGKILL);
    let _ = a.child.wait();
    match claim_when_free(&b, "k.jpg", "hk", Duration::from_millis(1500 + 5000)) {
        Claim::Resume(j) => {
            assert_eq!(j.id, id);
            assert_eq!(
                j.remote_job.as_deref(),
                Some("R-42"),
                "the paid remote job is kept"
            );
        }
        other => panic!("expected Resume, got {other:?}"),
    }
    let list = b.instances().expect("instances");
    let row = |id: &str| list.iter().find(|i| i.id == id).expect("listed").clone();
    assert!(!row("a").alive && row("b").alive);
    assert_eq!((row("a").jobs_held, row("b").jobs_held), (0, 1));
    // The killed instance's pid is gone: it may register again at once.
    let again = Store::open_postgres(&opts(&url, "a", 1500)).expect("a comes back");
    let alive = |id: &str| {
        b.instances()
            .expect("instances")
            .iter()
            .any(|i| i.id == id && i.alive)
    };
    assert!(alive("a"), "a registered again");
    // A handle dropped marks its instance stopped before drop returns.
    drop(again);
    assert!(!alive("a"), "a stopped");
    b.finish(id, Audit::NotWritten).expect("b finishes its job");
}

/// A paused instance (SIGSTOP) loses its job to another after the lease;
/// woken (SIGCONT), its late finish is refused, and the new holder's stands.
#[test]
fn a_paused_then_woken_instance_cannot_finish_a_job_taken_over() {
    let Some(pg) = start_or_skip("a_paused_then_woken_instance_cannot_finish") else {
        return;
    };
    let url = pg.create_db("fencing");
    let mut a = ChildInstance::start(&url, 1000);
    let id = a.claim_new("f.jpg", "hf");
    // While a is alive, its id cannot be taken by another process.
    let e = Store::open_postgres(&opts(&url, "a", 1000))
        .err()
        .expect("id in use");
    assert!(e.to_string().contains("in use"), "{e}");
    a.signal(libc::SIGSTOP);
    let b = Store::open_postgres(&opts(&url, "b", 1000)).expect("open b");
    assert!(
        matches!(claim_when_free(&b, "f.jpg", "hf", Duration::from_secs(6)), Claim::Resume(j) if j.id == id)
    );
    a.signal(libc::SIGCONT);
    assert_eq!(a.ask(&format!("finish {id}")), "fenced by b");
    let row = b.get(id).expect("get").expect("row");
    assert!(row.active, "the stale finish changed nothing");
    succeed_with_output(&b, id, &pg.dir.path().join("f.png"));
    let audit = b.audit_tail(10).expect("audit");
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].0, "b");
    assert!(audit[0].1.contains("succeeded"));
}

/// What a move that finds its input gone asks the database (the rename
/// race on a shared folder): while the job is still this instance's and
/// no other job for the path finished, the input just vanished (None);
/// once another instance took the job over, it is theirs. (The race itself,
/// a takeover between the fence check and the rename, cannot be provoked
/// deterministically from outside; this pins the answer it relies on.)
#[test]
fn an_input_gone_under_a_move_is_someone_elses_only_once_the_job_was_taken_over() {
    let Some(pg) = start_or_skip("an_input_gone_under_a_move") else {
        return;
    };
    let url = pg.create_db("elsewhere");
    let mut a = ChildInstance::start(&url, 1000);
    let id = a.claim_new("g.jpg", "hg");
    assert_eq!(a.ask(&format!("elsewhere {id}")), "Ok(None)");
    assert!(a.ask(&format!("check {id}")).starts_with("Ok"));
    a.signal(libc::SIGSTOP);
    let b = Store::open_postgres(&opts(&url, "b", 1000)).expect("open b");
    assert!(
        matches!(claim_when_free(&b, "g.jpg", "hg", Duration::from_secs(6)), Claim::Resume(j) if j.id == id)
    );
    a.signal(libc::SIGCONT);
    assert_eq!(
        a.ask(&format!("elsewhere {id}")),
        "Ok(Some(TakenOver { holder: \"b\" }))"
    );
    assert!(a.ask(&format!("check {id}")).contains("Fenced"));
    assert!(a.ask(&format!("get_held {id}")).contains("Fenced"));
    assert_eq!(b.finished_elsewhere(id).expect("b asks"), None);
    b.check_held(id).expect("b holds it");
}

/// Connection checks: a wrong password is a clear error that does not
/// echo it; a non-loopback host without TLS is refused before connecting.
#[test]
fn connection_errors_are_clear_and_keep_the_password_secret() {
    let Some(pg) = start_or_skip("connection_errors_are_clear") else {
        return;
    };
    let url = pg.create_db("conn");
    let mut o = opts(&url, "x", 1000);
    o.password = Some("wrong-secret-1234".into());
    let e = Store::open_postgres(&o).err().expect("wrong password");
    let msg = e.to_string();
    assert!(msg.contains("password authentication failed"), "{msg}");
    assert!(!msg.contains("wrong-secret-1234"), "{msg}");
    let far = opts("postgres://cutout@192.0.2.7:5432/db", "x", 1000);
    let e = Store::open_postgres(&far)
        .err()
        .expect("no TLS to a far host");
    assert!(e.to_string().contains("sslmode=disable"), "{e}");
}

/// The real binary on the shared state: `cutout process` with `[state]`
/// (password from a file) finishes every picture, appends its own
/// `audit-<instance>.jsonl`, copies each outcome to the `audit` table, and
/// `cutout status` lists the instance.
#[test]
fn the_binary_runs_on_the_shared_state_and_status_lists_the_instance() {
    let Some(pg) = start_or_skip("the_binary_runs_on_the_shared_state") else {
        return;
    };
    let url = pg.create_db("binary");
    let site = support::Site::new(&format!(
        "[state]\nurl = \"{url}\"\npassword_file = \"pg-password\"\ninstance = \"one\"\nlease = \"5s\"\n"
    ));
    std::fs::write(site.root().join("pg-password"), format!("{PASSWORD}\n")).expect("pw");
    site.drop_file("a.jpg", &support::jpeg(200, 160, 1));
    site.drop_file("b.png", &support::png(180, 180, 2));
    site.drop_file("bad.jpg", b"this is not a picture at all");
    let out = site.process(&[]);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("2 succeeded"), "{text}");
    assert!(
        !text.contains(PASSWORD),
        "the password stays secret: {text}"
    );
    let lines = support::read_jsonl(&site.root().join("state/audit-one.jsonl"));
    let events: Vec<String> = lines
        .iter()
        .map(|r| r["event"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        events.iter().filter(|e| *e == "succeeded").count(),
        2,
        "{events:?}"
    );
    assert!(!site.root().join("state/audit.jsonl").exists());
    let store = Store::open_postgres_read_only(&opts(&url, "reader", 1000)).expect("open");
    let table = store.audit_tail(10).expect("audit table");
    assert_eq!(table.len(), 3, "{table:?}");
    assert!(table.iter().all(|(i, _)| i == "one"));
    let counts = store.counts().expect("counts");
    let n = |k: &str| counts.iter().find(|(o, _)| o == k).map(|(_, n)| *n);
    assert_eq!((n("succeeded"), n("rejected")), (Some(2), Some(1)));
    let status = site.cmd(&["status"]).output().expect("status");
    let s = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(s.contains("instances (1):") && s.contains("one"), "{s}");
    assert!(s.contains("jobs held 0"), "{s}");
}

/// The takeover sweep's two calls: a dead instance's active jobs (in the
/// named inboxes only) are listed without being taken, and each is adopted
/// by exactly one survivor, which then holds it (writes pass) while the
/// other's are fenced.
#[test]
fn a_dead_instances_jobs_are_listed_and_adopted_by_exactly_one_survivor() {
    let Some(pg) = start_or_skip("orphans_adopted_once") else {
        return;
    };
    let url = pg.create_db("orphans");
    let a = Store::open_postgres(&opts(&url, "a", 1000)).expect("open a");
    let b = Store::open_postgres(&opts(&url, "b", 1000)).expect("open b");
    let c = Store::open_postgres(&opts(&url, "c", 1000)).expect("open c");
    let Claim::New(undecided) = claim(&a, "u.jpg", "hu") else {
        panic!("a claims u.jpg");
    };
    let Claim::New(decided) = claim(&a, "d.jpg", "hd") else {
        panic!("a claims d.jpg");
    };
    wait(a.decide(
        decided.id,
        Outcome::Succeeded,
        None,
        None,
        None,
        None,
        |_| Ok("{\"outcome\":\"succeeded\"}".into()),
    ))
    .expect("decide");
    let inboxes = ["in".to_string()];
    let orphans = |s: &Store| {
        let mut ids: Vec<i64> = wait(s.orphans(&inboxes, 10))
            .expect("orphans")
            .iter()
            .map(|j| j.id)
            .collect();
        ids.sort();
        ids
    };
    assert!(
        orphans(&b).is_empty(),
        "a live instance's jobs are not orphans"
    );
    drop(a);
    let both = {
        let mut v = vec![undecided.id, decided.id];
        v.sort();
        v
    };
    assert_eq!(orphans(&b), both, "listed once a is gone");
    assert_eq!(orphans(&c), both, "listing takes nothing");
    assert!(
        wait(b.orphans(&["elsewhere".to_string()], 10))
            .expect("orphans")
            .is_empty(),
        "only the named inboxes"
    );
    let taken = wait(b.adopt(decided.id)).expect("adopt").expect("b adopts");
    assert_eq!(
        taken.outcome,
        Some(Outcome::Succeeded),
        "the decision comes along"
    );
    assert!(
        wait(c.adopt(decided.id)).expect("adopt").is_none(),
        "taken once"
    );
    assert!(wait(c.adopt(undecided.id)).expect("adopt").is_some());
    assert!(orphans(&b).is_empty() && orphans(&c).is_empty());
    assert!(
        matches!(
            c.finish(decided.id, Audit::Written),
            Err(StoreError::Fenced { .. })
        ),
        "c does not hold the job b adopted"
    );
    b.finish(decided.id, Audit::Written)
        .expect("b finishes what it adopted");
    c.abandon(undecided.id, "gone")
        .expect("c drops what it adopted");
    let list = c.instances().expect("instances");
    assert!(list.iter().all(|i| i.jobs_held == 0), "{list:?}");
}

/// Through the binary, without a restart: a running instance's takeover
/// sweep finishes a dead instance's decided job whose input is already
/// gone (it had been moved before the death) and drops its unfinished job
/// whose input is gone, as start-up recovery would.
#[test]
fn a_running_instance_finishes_a_dead_instances_job_whose_input_is_gone() {
    let Some(pg) = start_or_skip("a_running_instance_finishes_a_dead_instances_job") else {
        return;
    };
    let url = pg.create_db("sweep");
    let site = support::Site::new(&format!(
        "[state]\nurl = \"{url}\"\npassword_file = \"pg-password\"\ninstance = \"b\"\nlease = \"1s\"\n\
         [[inbox]]\nname = \"in\"\npath = \"inbox\"\nsettle = \"100ms\"\n"
    ));
    std::fs::write(site.root().join("pg-password"), format!("{PASSWORD}\n")).expect("pw");
    let mut b = site.spawn_daemon_env(&[("RUST_LOG", "info,cutout::pipeline=debug".as_ref())]);
    let reader = Store::open_postgres_read_only(&opts(&url, "reader", 1000)).expect("open");
    wait_until(Duration::from_secs(60), "b registers", || {
        reader
            .instances()
            .is_ok_and(|l| l.iter().any(|i| i.id == "b" && i.alive))
    });
    let a = Store::open_postgres(&opts(&url, "a", 1000)).expect("open a");
    let Claim::New(decided) = claim(&a, "d.jpg", "hd") else {
        panic!("a claims d.jpg");
    };
    let Claim::New(undecided) = claim(&a, "u.jpg", "hu") else {
        panic!("a claims u.jpg");
    };
    // Its move was reserved (archive/d.jpg), but the input went before it
    // was moved: the line written names no move, and so does the table.
    let id = decided.id;
    let archive = site.root().join("archive");
    wait(a.decide(
        id,
        Outcome::Succeeded,
        None,
        None,
        None,
        Some(naming(&archive, "d.jpg")),
        move |to| {
            let to = to.map(|p| p.display().to_string()).unwrap_or_default();
            Ok(format!(
                "{{\"event\":\"succeeded\",\"job\":{id},\"input\":\"d.jpg\",\"moved_to\":\"{to}\"}}"
            ))
        },
    ))
    .expect("decide");
    drop(a);
    let ended = |id: i64| reader.get(id).ok().flatten().is_some_and(|j| !j.active);
    let t = std::time::Instant::now();
    while !(ended(decided.id) && ended(undecided.id)) {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "b did not take both jobs over: {:?} {:?}; its log:\n{}",
            reader.instances(),
            reader.get(decided.id),
            b.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let u = reader.get(undecided.id).expect("get").expect("row");
    assert_eq!(u.outcome, Some(Outcome::Vanished), "{u:?}");
    let lines = support::read_jsonl(&site.root().join("state/audit-b.jsonl"));
    let mine: Vec<_> = lines.iter().filter(|l| l["job"] == decided.id).collect();
    assert_eq!(
        mine.len(),
        1,
        "the decided job's audit line, once: {lines:?}"
    );
    assert_eq!(mine[0]["event"], "succeeded");
    assert!(mine[0].get("moved_to").is_none(), "{:?}", mine[0]);
    let table = reader.audit_tail(10).expect("audit table");
    assert_eq!(table.len(), 1, "{table:?}");
    assert_eq!(table[0].0, "b", "the audit table has it, from b");
    let in_table: serde_json::Value = serde_json::from_str(&table[0].1).expect("json");
    assert_eq!(&in_table, mine[0], "the table says what the file says");
    b.term();
    let status = b.wait(Duration::from_secs(60));
    assert!(status.success(), "{}", b.log_text());
    assert!(
        b.log_text()
            .contains("took over a dead instance's decided job"),
        "{}",
        b.log_text()
    );
}
