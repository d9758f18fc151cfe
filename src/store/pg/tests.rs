//! The pool's retry of transient conflicts, on a real PostgreSQL
//! (tests/support/postgres.rs; skipped with the reason where it cannot
//! start): a real deadlock between two pool transactions is run again and
//! succeeds; any other error is final.
//!
//! Must not: assert durations.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use super::{Pg, PgOptions};

#[allow(dead_code)]
#[path = "../../../tests/support/postgres.rs"]
mod server;

fn open(test: &str) -> Option<(server::Postgres, Arc<Pg>)> {
    let pg = server::start_or_skip(test)?;
    let url = pg.create_db("retry");
    let opts = PgOptions {
        url,
        password: Some(server::PASSWORD.into()),
        instance: "t".into(),
        lease: Duration::from_secs(30),
        connections: 2,
    };
    let store = Pg::open(&opts).expect("open the state");
    store
        .run(|tx| {
            tx.batch_execute(
                "CREATE TABLE pair (id INT PRIMARY KEY, v INT NOT NULL);
                 INSERT INTO pair VALUES (1, 0), (2, 0)",
            )?;
            Ok(())
        })
        .expect("table");
    Some((pg, store))
}

/// Two transactions lock rows 1 and 2 in opposite orders: PostgreSQL
/// breaks the deadlock by refusing one of them (40P01); the pool runs
/// that one again in a fresh transaction and both succeed.
#[test]
fn a_deadlocked_transaction_is_run_again_and_succeeds() {
    let Some((_server, pg)) = open("a_deadlocked_transaction_is_run_again") else {
        return;
    };
    let both_hold_one = Arc::new(Barrier::new(2));
    let runs = Arc::new(AtomicUsize::new(0));
    let spawn = |first: i32, second: i32| {
        let (pg, barrier, runs) = (pg.clone(), both_hold_one.clone(), runs.clone());
        std::thread::spawn(move || {
            pg.run(move |tx| {
                let n = runs.fetch_add(1, Ordering::SeqCst);
                tx.execute("UPDATE pair SET v = v + 1 WHERE id = $1", &[&first])?;
                // Only the first run of each waits: a run again finds the
                // other transaction committed and nothing to wait for.
                if n < 2 {
                    barrier.wait();
                }
                tx.execute("UPDATE pair SET v = v + 1 WHERE id = $1", &[&second])?;
                Ok(())
            })
        })
    };
    let (a, b) = (spawn(1, 2), spawn(2, 1));
    let (ra, rb) = (a.join().expect("thread a"), b.join().expect("thread b"));
    assert!(ra.is_ok() && rb.is_ok(), "{ra:?} {rb:?}");
    assert_eq!(
        runs.load(Ordering::SeqCst),
        3,
        "the refused transaction ran once more"
    );
    let v = pg
        .run(|tx| {
            let rows = tx.query("SELECT v FROM pair ORDER BY id", &[])?;
            rows.iter()
                .map(|r| Ok(r.try_get::<_, i32>(0)?))
                .collect::<super::PgResult<Vec<i32>>>()
        })
        .expect("read");
    // Each transaction's two updates took effect exactly once.
    assert_eq!(v, vec![2, 2]);
}

/// An error that is not a transient conflict is not run again.
#[test]
fn other_errors_are_not_run_again() {
    let Some((_server, pg)) = open("other_errors_are_not_run_again") else {
        return;
    };
    let runs = Arc::new(AtomicUsize::new(0));
    let r = {
        let runs = runs.clone();
        pg.run(move |tx| {
            runs.fetch_add(1, Ordering::SeqCst);
            tx.execute("UPDATE pair SET no_such_column = 1", &[])?;
            Ok(())
        })
    };
    let e = r.expect_err("the statement fails");
    assert!(e.to_string().contains("42703"), "{e}");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}
