//! A real PostgreSQL server for tests: Debian's `postgresql` package
//! (`initdb` + `pg_ctl`), a cluster in a temp folder owned by an
//! unprivileged user (tests run as root and PostgreSQL refuses root: the
//! server runs as `nobody` through `runuser`), on a free loopback port,
//! password authentication over TCP. Stopped (immediately) on drop.
//!
//! `Postgres::start()` returns `Err(reason)` where that cannot be done; the
//! tests then print the reason and skip. scripts/test.sh installs the
//! package.

use std::path::{Path, PathBuf};
use std::process::Command;

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

    /// A fresh database; returns its URL.
    pub fn create_db(&self, name: &str) -> String {
        let mut admin = postgres::Config::new();
        admin
            .host("127.0.0.1")
            .port(self.port)
            .user(USER)
            .password(PASSWORD)
            .dbname("postgres");
        let mut c = admin.connect(postgres::NoTls).expect("connect as admin");
        c.batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .expect("create database");
        self.url(name)
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = self.run("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]);
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
