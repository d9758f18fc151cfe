//! Tests of the settle rules and the `Settler` state machine (time passed
//! in, no sleeping).

use super::*;
use std::io::Write;
use std::time::SystemTime;

#[test]
fn ignore_rules() {
    for n in [
        ".DS_Store",
        "._shoe.jpg",
        "Thumbs.db",
        "@eaDir",
        ".stfolder",
        "shoe.jpg.part",
        "shoe.crdownload",
        "x.tmp",
        "~$draft.jpg",
        "a.partial",
    ] {
        assert!(ignored_name(n), "{n} should be ignored");
    }
    for n in ["shoe.jpg", "bag 2.PNG", "ü.webp", "tmp.jpg", "part.png"] {
        assert!(!ignored_name(n), "{n} should be taken");
    }
}

#[test]
fn a_growing_file_is_not_ready_until_quiet_and_stable() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("slow.jpg");
    let mut f = std::fs::File::create(&p).expect("create");
    f.write_all(b"abc").expect("write");
    let settle = Duration::from_secs(2);
    let mut s = Settler::new();
    let t0 = Instant::now();
    s.observe(0, p.clone(), Seen::Event, t0, settle);
    s.tick(t0 + Duration::from_secs(1), |_| settle);
    assert_eq!(s.ready_len(), 0, "not quiet yet");
    f.write_all(b"more").expect("write");
    f.sync_all().expect("sync");
    // quiet long enough, but the size changed since the first stat
    s.tick(t0 + Duration::from_secs(3), |_| settle);
    assert_eq!(s.ready_len(), 0, "changed: must wait again");
    s.tick(t0 + Duration::from_secs(4), |_| settle);
    assert_eq!(s.ready_len(), 0, "quiet period restarted");
    s.tick(t0 + Duration::from_secs(6), |_| settle);
    assert_eq!(s.ready_len(), 1, "stable now");
    let r = s.next(|_| false).expect("ready");
    assert_eq!(r.path, p);
    // events while in flight do not queue it twice; the file is still
    // there after the worker, so it settles again
    s.observe(0, p.clone(), Seen::Event, t0, settle);
    assert_eq!(s.pending_len(), 0);
    s.done(&p);
    assert_eq!(s.pending_len(), 1);
    // gone after the worker (moved to its place): nothing to settle
    let r = {
        s.tick(Instant::now() + 2 * settle, |_| settle);
        s.next(|_| false).expect("ready again")
    };
    s.observe(0, r.path.clone(), Seen::Event, t0, settle);
    std::fs::remove_file(&p).expect("rm");
    s.done(&p);
    assert!(s.is_idle());
}

#[test]
fn next_due_is_the_earliest_deadline_and_clears_when_nothing_waits() {
    let d = tempfile::tempdir().expect("tempdir");
    let (a, b) = (d.path().join("a.jpg"), d.path().join("b.jpg"));
    std::fs::write(&a, b"a").expect("write");
    std::fs::write(&b, b"b").expect("write");
    let settle = Duration::from_secs(2);
    let mut s = Settler::new();
    assert_eq!(s.next_due(), None);
    let t0 = Instant::now();
    s.observe(0, a.clone(), Seen::Event, t0, settle);
    assert_eq!(s.next_due(), Some(t0 + settle));
    s.later(0, b.clone(), t0, Duration::from_millis(500));
    assert_eq!(s.next_due(), Some(t0 + Duration::from_millis(500)));
    // Before the deadline a tick does nothing.
    s.tick(t0 + Duration::from_millis(100), |_| settle);
    assert_eq!(s.pending_len(), 2);
    // b's delay is over but its quiet period (from `later`) is not:
    // the pass finds nothing ready and moves the deadline on.
    s.tick(t0 + Duration::from_millis(600), |_| settle);
    assert_eq!(s.ready_len(), 0);
    assert_eq!(s.next_due(), Some(t0 + settle));
    s.tick(t0 + settle, |_| settle);
    assert_eq!(s.ready_len(), 1, "a is ready; b was never stamped");
    assert!(s.next_due().is_some_and(|t| t > t0 + settle));
    s.tick(t0 + 3 * settle, |_| settle);
    assert_eq!(s.ready_len(), 2);
    assert_eq!(s.next_due(), None, "nothing pending: no wake-up");
}

#[test]
fn a_file_renamed_in_needs_only_a_short_recheck() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("moved.jpg");
    std::fs::write(&p, b"whole").expect("write");
    let settle = Duration::from_secs(5);
    let mut s = Settler::new();
    let t0 = Instant::now();
    s.observe(0, p.clone(), Seen::Arrived, t0, settle);
    assert_eq!(s.next_due(), Some(t0 + BACKLOG_RECHECK));
    s.tick(t0 + BACKLOG_RECHECK, |_| settle);
    assert_eq!(
        s.ready_len(),
        1,
        "arrived complete: taken after the re-check"
    );
}

#[test]
fn a_write_after_the_rename_means_a_full_quiet_period() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("moved.jpg");
    std::fs::write(&p, b"whole").expect("write");
    let settle = Duration::from_secs(5);
    let mut s = Settler::new();
    let t0 = Instant::now();
    s.observe(0, p.clone(), Seen::Arrived, t0, settle);
    s.observe(0, p.clone(), Seen::Event, t0, settle);
    s.tick(t0 + BACKLOG_RECHECK, |_| settle);
    assert_eq!(s.ready_len(), 0, "written to after it arrived");
}

#[test]
fn a_change_while_queued_takes_the_file_back_to_settling() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("q.jpg");
    std::fs::write(&p, b"v1").expect("write");
    let settle = Duration::from_secs(1);
    let mut s = Settler::new();
    let t0 = Instant::now();
    s.observe(0, p.clone(), Seen::Event, t0, settle);
    s.tick(t0 + settle, |_| settle);
    assert_eq!(s.ready_len(), 1);
    // A scan changes nothing; a write does.
    s.observe(0, p.clone(), Seen::Scan, t0 + settle, settle);
    assert_eq!(s.ready_len(), 1);
    s.observe(0, p.clone(), Seen::Event, t0 + settle, settle);
    assert_eq!((s.ready_len(), s.pending_len()), (0, 1));
    s.tick(t0 + 2 * settle, |_| settle);
    assert_eq!(s.ready_len(), 1, "quiet and stable again");
    assert!(s.next(|_| false).is_some());
    assert_eq!(s.ready_len(), 0, "queued once");
}

#[test]
fn a_change_while_a_worker_has_the_file_settles_it_again_after() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("w.jpg");
    std::fs::write(&p, b"v1").expect("write");
    let settle = Duration::from_secs(1);
    let mut s = Settler::new();
    let t0 = Instant::now();
    s.observe(0, p.clone(), Seen::Scan, t0, settle);
    s.tick(t0 + settle, |_| settle);
    let r = s.next(|_| false).expect("ready");
    s.observe(0, r.path.clone(), Seen::Event, t0 + settle, settle);
    assert_eq!(s.pending_len(), 0, "not while the worker has it");
    let t1 = t0 + 2 * settle;
    s.done_at(&r.path, t1);
    assert_eq!(s.pending_len(), 1, "the new version settles");
    s.tick(t1 + settle, |_| settle);
    assert_eq!(s.ready_len(), 1);
    // Unchanged while in work: nothing comes back.
    let r = s.next(|_| false).expect("ready");
    s.done_at(&r.path, t1 + settle);
    assert!(s.is_idle());
}

#[test]
fn unchanged_for_counts_from_the_later_of_mtime_and_ctime() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("e.jpg");
    std::fs::write(&p, b"").expect("write");
    // An old mtime (as `cp -p` or `touch -d` leave) does not make a
    // file that just arrived look old: ctime is now.
    let f = std::fs::File::options().write(true).open(&p).expect("open");
    f.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .expect("set mtime");
    let m = std::fs::symlink_metadata(&p).expect("stat");
    assert!(unchanged_for(&m) < Duration::from_secs(60));
}

#[test]
fn a_change_ends_a_delay_set_by_later() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("empty.jpg");
    std::fs::write(&p, b"").expect("write");
    let settle = Duration::from_secs(1);
    let mut s = Settler::new();
    let t0 = Instant::now();
    // An empty file sent back for its grace period, then written.
    s.later(0, p.clone(), t0, Duration::from_secs(60));
    std::fs::write(&p, b"bytes").expect("write");
    s.observe(0, p.clone(), Seen::Event, t0 + settle, settle);
    s.tick(t0 + 2 * settle, |_| settle);
    s.tick(t0 + 3 * settle, |_| settle);
    assert_eq!(s.ready_len(), 1, "settled, not held for the grace period");
}

#[test]
fn vanished_files_are_dropped() {
    let d = tempfile::tempdir().expect("tempdir");
    let p = d.path().join("gone.jpg");
    std::fs::write(&p, b"x").expect("write");
    let mut s = Settler::new();
    let t0 = Instant::now();
    let settle = Duration::from_millis(10);
    s.observe(0, p.clone(), Seen::Scan, t0, settle);
    std::fs::remove_file(&p).expect("rm");
    s.tick(t0 + Duration::from_secs(1), |_| settle);
    assert!(s.is_idle());
}

#[test]
fn hurry_puts_a_waiting_file_first_and_leaves_one_in_work_alone() {
    let d = tempfile::tempdir().expect("tempdir");
    let settle = Duration::from_millis(10);
    let mut s = Settler::new();
    let t0 = Instant::now();
    let paths: Vec<PathBuf> = (0..3)
        .map(|i| {
            let p = d.path().join(format!("{i}.jpg"));
            std::fs::write(&p, b"x").expect("write");
            p
        })
        .collect();
    for p in &paths {
        s.observe(0, p.clone(), Seen::Scan, t0, settle);
    }
    s.tick(t0 + settle, |_| settle);
    s.tick(t0 + 2 * settle, |_| settle);
    assert_eq!(s.ready_len(), 3);
    // A file sent back by `later` for a minute, and one already queued
    // last, both go first when hurried.
    let late = d.path().join("late.jpg");
    std::fs::write(&late, b"x").expect("write");
    s.later(0, late.clone(), t0, Duration::from_secs(60));
    s.hurry(0, paths[2].clone());
    s.hurry(0, late.clone());
    assert_eq!(s.ready_len(), 4, "hurried files are not queued twice");
    assert_eq!(s.pending_len(), 0, "the delay set by later is over");
    let order: Vec<PathBuf> = std::iter::from_fn(|| s.next(|_| false).map(|r| r.path)).collect();
    assert_eq!(order[..2], [late.clone(), paths[2].clone()]);
    let mut rest = order[2..].to_vec();
    rest.sort();
    assert_eq!(rest, paths[..2]);
    // A file a worker has stays with the worker.
    s.hurry(0, late.clone());
    assert_eq!(s.ready_len(), 0);
    assert_eq!(s.in_flight_len(), 4);
}
