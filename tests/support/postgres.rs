//! A real PostgreSQL server for tests: Debian's `postgresql` package
//! (`initdb` + `pg_ctl`), a cluster in a temp folder owned by an
//! unprivileged user (tests run as root and PostgreSQL refuses root: the
//! server runs as `nobody` through `runuser`), on a free loopback port,
//! password authentication over TCP. Stopped (immediately) on drop.
//!
//! `Postgres::start()` returns `Err(reason)` where that cannot be done; the
//! tests then print the reason and skip. scripts/test.sh installs the
//! package. `start_or_skip` gives a test its own server; `shared_or_skip`
//! one server for the whole test binary, started by the first test asking
//! and stopped (its folder removed) when the binary exits.
//!
//! Must not: touch a PostgreSQL the machine runs for anything else, or put
//! the password on a command line.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The database superuser the tests connect as, and its password.
pub const USER: &str = "cutout";
pub const PASSWORD: &str = "pg-test-secret-7d1f";

pub struct Postgres {
    pub dir: tempfile::TempDir,
    pub port: u16,
    bin: PathBuf,
    /// The user the server runs as (None: the current, unprivileged, user).
    run_as: Option<&'static str>,
}

/// The folder holding `initdb` and `pg_ctl`: Debian's versioned folder
/// (newest first), else `$PATH`.
fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists() && p.join("pg_ctl").exists())
        .collect();
    versions.sort();
    versions.pop()
}

fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

impl Postgres {
    /// Start a fresh cluster, or say why not.
    pub fn start() -> Result<Postgres, String> {
        let bin = bin_dir().ok_or_else(|| {
            "PostgreSQL is not installed (Debian's `postgresql` package; scripts/test.sh installs it)".to_string()
        })?;
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        let run_as = root.then_some("nobody");
        if root && !Path::new("/usr/sbin/runuser").exists() && !Path::new("/sbin/runuser").exists()
        {
            return Err(
                "running as root and runuser is missing: PostgreSQL refuses to run as root".into(),
            );
        }
        let dir = tempfile::Builder::new()
            .prefix("cutout-pg-")
            .tempdir()
            .map_err(|e| format!("tempdir: {e}"))?;
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PASSWORD).map_err(|e| format!("pwfile: {e}"))?;
        if root {
            // The cluster's folder (and the way to it) must be the server's.
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755));
            std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534))
                .map_err(|e| format!("chown: {e}"))?;
            std::os::unix::fs::chown(&pw, Some(65534), Some(65534))
                .map_err(|e| format!("chown: {e}"))?;
        }
        let mut pg = Postgres {
            dir,
            port: 0,
            bin,
            run_as,
        };
        let data = pg.data();
        let pw_arg = format!("--pwfile={}", pw.display());
        pg.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                USER,
                "-E",
                "UTF8",
                "--no-locale",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                &pw_arg,
                "--no-sync",
            ],
        )?;
        // A few tries: the free port may be taken between probe and start.
        let mut last = String::new();
        for _ in 0..5 {
            pg.port = free_port()?;
            let opts = format!(
                "-c listen_addresses=127.0.0.1 -c port={} -c unix_socket_directories={} -c fsync=off -c max_connections=200",
                pg.port,
                pg.dir.path().display()
            );
            let log = pg.dir.path().join("server.log").display().to_string();
            match pg.run(
                "pg_ctl",
                &[
                    "-D", &data, "-o", &opts, "-l", &log, "-w", "-t", "30", "start",
                ],
            ) {
                Ok(()) => return Ok(pg),
                Err(e) => {
                    let tail = std::fs::read_to_string(&log).unwrap_or_default();
                    last = format!("{e}\n{tail}");
                }
            }
        }
        Err(format!("pg_ctl start failed: {last}"))
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), String> {
        let exe = self.bin.join(tool);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| format!("{tool}: {e}"))?;
        if out.status.success() {
            return Ok(());
        }
        Err(format!(
            "{tool} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }

    /// A URL without the password (it goes in separately, as cutout reads
    /// it from a file).
    pub fn url(&self, db: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{db}", self.port)
    }

    /// A connection to database `db` as the superuser, with the password.
    pub fn connect(&self, db: &str) -> Result<postgres::Client, postgres::Error> {
        let mut cfg = postgres::Config::new();
        cfg.host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname(db);
        cfg.connect(postgres::NoTls)
    }

    /// A fresh database; returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        let mut c = self.connect("postgres").expect("connect as admin");
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create database");
        self.url(name)
    }

    /// Database `name`, created unless it exists (tests sharing one server
    /// may share a database, and may ask for it at the same time); returns
    /// its URL. Callable from async tests too: the blocking client runs on
    /// a thread of its own, outside the caller's runtime.
    pub fn database(&self, name: &str) -> String {
        std::thread::scope(|s| {
            s.spawn(|| {
                let mut c = self.connect("postgres").expect("connect as admin");
                if let Err(e) = c.batch_execute(&format!("CREATE DATABASE \"{name}\"")) {
                    let exists = c
                        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
                        .expect("look up the database");
                    assert!(exists.is_some(), "create database {name}: {e}");
                }
            })
            .join()
            .expect("create the database");
        });
        self.url(name)
    }

    /// Stop the server at once.
    fn stop(&self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Start PostgreSQL or print why the calling test is skipped.
pub fn start_or_skip(test: &str) -> Option<Postgres> {
    match Postgres::start() {
        Ok(pg) => Some(pg),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

/// The server shared by the tests of this binary (or why there is none).
static SHARED: OnceLock<Result<Postgres, String>> = OnceLock::new();

/// The server of this test binary, started by the first caller; or None
/// after printing why the calling test is skipped. Statics are never
/// dropped: it is stopped, and its folder removed, when the binary exits.
pub fn shared_or_skip(test: &str) -> Option<&'static Postgres> {
    let shared = SHARED.get_or_init(|| {
        let pg = Postgres::start()?;
        // SAFETY: registers a plain extern "C" fn taking no arguments.
        unsafe {
            libc::atexit(stop_shared_at_exit);
        }
        Ok(pg)
    });
    match shared {
        Ok(pg) => Some(pg),
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            None
        }
    }
}

extern "C" fn stop_shared_at_exit() {
    if let Some(Ok(pg)) = SHARED.get() {
        pg.stop();
        let _ = std::fs::remove_dir_all(pg.dir.path());
    }
}
