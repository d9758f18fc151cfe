//! A real PostgreSQL for the scale-out tests: Debian's `postgresql`
//! binaries (`initdb`, `pg_ctl`), a cluster in a temp folder owned by an
//! unprivileged user (PostgreSQL refuses to run as root; as root the
//! commands run as `postgres` through `runuser`), trust authentication on
//! 127.0.0.1 and a free port. One server per test binary, stopped when the
//! binary exits; each test asks for its own database.
//!
//! Must not: touch a PostgreSQL the machine runs for anything else.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub struct Postgres {
    pub port: u16,
    bin: PathBuf,
    data: PathBuf,
    _dir: tempfile::TempDir,
}

static SERVER: OnceLock<Option<Postgres>> = OnceLock::new();

/// The folder with `initdb` and `pg_ctl`, newest version first.
fn find_bin() -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin"))
        .filter(|b| b.join("initdb").exists() && b.join("pg_ctl").exists())
        .collect();
    found.sort();
    found.pop()
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// `prog args…`, as `postgres` when we are root.
fn as_owner(prog: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(prog);
        c
    } else {
        Command::new(prog)
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start() -> Result<Postgres, String> {
    let bin =
        find_bin().ok_or("no /usr/lib/postgresql/*/bin/initdb (apt-get install postgresql)")?;
    let dir = tempfile::Builder::new()
        .prefix("cutout-pg-")
        .tempdir()
        .map_err(|e| format!("temp folder: {e}"))?;
    if is_root() {
        let ok = Command::new("chown")
            .args(["-R", "postgres"])
            .arg(dir.path())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            return Err("cannot hand the temp folder to user `postgres`".into());
        }
    }
    let data = dir.path().join("data");
    let out = as_owner(&bin.join("initdb"))
        .arg("-D")
        .arg(&data)
        .args(["-U", "cutout", "--auth=trust", "--no-sync"])
        .output()
        .map_err(|e| format!("initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
        dir.path().display()
    );
    let out = as_owner(&bin.join("pg_ctl"))
        .arg("-D")
        .arg(&data)
        .args(["-o", &opts, "-w", "-l"])
        .arg(dir.path().join("server.log"))
        .arg("start")
        .output()
        .map_err(|e| format!("pg_ctl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "pg_ctl start failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(Postgres {
        port,
        bin,
        data,
        _dir: dir,
    })
}

/// The server of this test binary, or None after printing why there is none.
pub fn server() -> Option<&'static Postgres> {
    let s = SERVER.get_or_init(|| match start() {
        Ok(pg) => {
            // SAFETY: registering a plain extern "C" fn without arguments.
            unsafe {
                libc::atexit(stop_at_exit);
            }
            Some(pg)
        }
        Err(why) => {
            eprintln!("SKIPPED: no PostgreSQL for the scale-out tests: {why}");
            None
        }
    });
    if s.is_none() {
        eprintln!("SKIPPED: no PostgreSQL (see the first message)");
    }
    s.as_ref()
}

impl Postgres {
    /// The URL of database `name`, created when missing.
    pub fn database(&self, name: &str) -> String {
        // "already exists" is fine: the tests of one binary share some.
        let _ = Command::new(self.bin.join("createdb"))
            .args(["-h", "127.0.0.1", "-U", "cutout", "-p"])
            .arg(self.port.to_string())
            .arg(name)
            .output();
        self.url(name)
    }

    pub fn psql(&self) -> PathBuf {
        self.bin.join("psql")
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://cutout@127.0.0.1:{}/{db}", self.port)
    }
}

impl Postgres {
    fn stop(&self) {
        let _ = as_owner(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "immediate", "-w", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(self._dir.path());
    }
}

/// Statics are never dropped: stop the server when the test binary exits.
extern "C" fn stop_at_exit() {
    if let Some(Some(pg)) = SERVER.get() {
        pg.stop();
    }
}
