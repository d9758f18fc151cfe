//! The state store's own tests: claims, resumes, duplicates, batching and
//! the lock, against a real SQLite file in a temp folder.

use super::*;

/// Wait for a store call from a plain (test) thread.
trait Wait: std::future::Future + Sized {
    fn wait(self) -> Self::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(self)
    }
}
impl<F: std::future::Future> Wait for F {}

/// Job `id` succeeded with a cut-out at `out` (written now) and is done.
fn succeed_with_output(s: &Store, id: i64, out: &Path) {
    std::fs::write(out, b"x").expect("write");
    let out = Some(out.to_path_buf());
    s.decide(id, Outcome::Succeeded, out, None, None, None, |_| {
        Ok("{}".into())
    })
    .wait()
    .expect("decide");
    s.finish(id, Audit::Written).expect("finish");
}

/// A rejected job of `rel`, decided (a record to write, not audited).
fn rejected(s: &Store, rel: &str) -> i64 {
    let j = s
        .insert_untracked("in", Path::new(rel), None, Some(0), Some(1))
        .wait()
        .expect("insert");
    let why = Some("0 bytes".to_string());
    s.decide(
        j.id,
        Outcome::Rejected,
        None,
        Some(Code::EmptyFile),
        why,
        None,
        |_| Ok("{}".into()),
    )
    .wait()
    .expect("decide");
    j.id
}

#[test]
fn a_withdrawn_rejection_is_not_counted_listed_or_recovered() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path()).expect("open");
    let (a, b) = (rejected(&s, "a.jpg"), rejected(&s, "b.jpg"));
    s.withdraw(a).expect("withdraw");
    // An audited decision stands: withdrawing it changes nothing.
    s.finish(b, Audit::Written).expect("finish");
    s.withdraw(b).expect("withdraw");
    let counts = s.counts().expect("counts");
    let n = |k: &str| counts.iter().find(|(o, _)| o == k).map(|(_, n)| *n);
    assert_eq!((n("rejected"), n("withdrawn")), (Some(1), Some(1)));
    let errors = s.last_errors(10).expect("errors");
    assert_eq!(errors.iter().map(|j| j.id).collect::<Vec<_>>(), vec![b]);
    assert!(s.decided_unfinished().expect("unfinished").is_empty());
    let ja = s.get(a).expect("get").expect("row");
    assert_eq!((ja.outcome, ja.active), (Some(Outcome::Withdrawn), false));
    assert_eq!((ja.record, ja.move_to), (None, None));
}

#[test]
fn claim_resume_duplicate_busy() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path()).expect("open");
    let a = match s
        .claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("a.jpg").into(),
            sha256: "h1".to_string(),
            size: 10,
            mtime_ns: 1,
            provider: "local".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim")
    {
        Claim::New(j) => j,
        other => panic!("expected New, got {other:?}"),
    };
    // same path, same content, still active → resume
    assert!(matches!(
        s.claim(ClaimRequest {
        inbox: "in".into(),
        rel: Path::new("a.jpg").into(),
        sha256: "h1".to_string(),
        size: 10,
        mtime_ns: 1,
        provider: "local".into(),
        kept_in_place: false,
        output: None,
    }).wait().expect("claim"),
        Claim::Resume(j) if j.id == a.id
    ));
    // same content under another name while active → busy
    assert!(matches!(
        s.claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("b.jpg").into(),
            sha256: "h1".to_string(),
            size: 10,
            mtime_ns: 1,
            provider: "local".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim"),
        Claim::Busy
    ));
    succeed_with_output(&s, a.id, &d.path().join("a.png"));
    match s
        .claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("b.jpg").into(),
            sha256: "h1".to_string(),
            size: 10,
            mtime_ns: 1,
            provider: "local".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim")
    {
        Claim::Duplicate { earlier, .. } => assert_eq!(earlier.id, a.id),
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

#[test]
fn an_interrupted_duplicate_is_not_resumed_as_a_new_job() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path()).expect("open");
    let Claim::New(a) = s
        .claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("a.jpg").into(),
            sha256: "h1".to_string(),
            size: 1,
            mtime_ns: 1,
            provider: "p".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim")
    else {
        panic!("expected New");
    };
    succeed_with_output(&s, a.id, &d.path().join("a.png"));
    // b.jpg is claimed as a duplicate, then the process dies before deciding
    let Claim::Duplicate { job: b, .. } = s
        .claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("b.jpg").into(),
            sha256: "h1".to_string(),
            size: 1,
            mtime_ns: 1,
            provider: "p".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim")
    else {
        panic!("expected Duplicate");
    };
    // after a restart the same file must come back as a duplicate again
    match s
        .claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("b.jpg").into(),
            sha256: "h1".to_string(),
            size: 1,
            mtime_ns: 1,
            provider: "p".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim")
    {
        Claim::Duplicate { job, earlier } => {
            assert_eq!(job.id, b.id);
            assert_eq!(earlier.id, a.id);
        }
        other => panic!("expected Duplicate, got {other:?}"),
    }
}

#[test]
fn concurrent_claims_share_batches_and_all_commit() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path()).expect("open");
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let s = s.clone();
            let out = d.path().join("out");
            std::thread::spawn(move || {
                let name = format!("p{i}.jpg");
                let naming = Naming {
                    base: out.join(format!("p{i}.png")),
                    candidate: crate::fsutil::numbered,
                    also_free: |_| true,
                    all_names: None,
                };
                let sha = format!("h{i}");
                match s
                    .claim(ClaimRequest {
                        inbox: "in".into(),
                        rel: Path::new(&name).into(),
                        sha256: sha.clone(),
                        size: 1,
                        mtime_ns: 1,
                        provider: "p".into(),
                        kept_in_place: false,
                        output: Some(naming),
                    })
                    .wait()
                    .expect("claim")
                {
                    Claim::New(j) => j,
                    other => panic!("expected New, got {other:?}"),
                }
            })
        })
        .collect();
    let jobs: Vec<Job> = threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect();
    drop(s);
    // Everything answered is durable: a fresh open sees every claim with
    // its reserved output and first attempt.
    let s = Store::open(d.path()).expect("reopen");
    for j in jobs {
        let row = s.get(j.id).expect("get").expect("row");
        assert_eq!(row.attempts, 1);
        assert_eq!(row.output, j.output);
        assert!(row.output.is_some());
    }
    assert_eq!(s.undecided().expect("undecided").len(), 32);
}

#[test]
fn a_failing_request_rolls_back_alone_and_a_panic_does_not_stop_the_thread() {
    let d = tempfile::tempdir().expect("tempdir");
    let s = Store::open(d.path()).expect("open");
    let Claim::New(a) = s
        .claim(ClaimRequest {
            inbox: "in".into(),
            rel: Path::new("a.jpg").into(),
            sha256: "ha".to_string(),
            size: 1,
            mtime_ns: 1,
            provider: "p".into(),
            kept_in_place: false,
            output: None,
        })
        .wait()
        .expect("claim")
    else {
        panic!("expected New");
    };
    // Writes, then fails: its write must not survive.
    let e = s
        .run(move |c| -> OpResult<()> {
            c.execute("UPDATE jobs SET attempts = 99 WHERE id = ?1", [a.id])?;
            Err(OpError::Record("made to fail".into()))
        })
        .expect_err("must fail");
    assert!(e.to_string().contains("made to fail"), "{e}");
    let p = s.run(|_| -> OpResult<()> { panic!("made to panic") });
    assert!(p.is_err());
    // The state thread still serves, and the row is as before.
    s.set_attempts(a.id, 2).wait().expect("still served");
    assert_eq!(s.get(a.id).expect("get").expect("row").attempts, 2);
}

#[test]
fn second_open_is_refused_while_locked() {
    let d = tempfile::tempdir().expect("tempdir");
    let _s = Store::open(d.path()).expect("open");
    let e = Store::open(d.path()).err().expect("must be locked");
    assert!(matches!(e, StoreError::Locked { .. }), "{e}");
}
