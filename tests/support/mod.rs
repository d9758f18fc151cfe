//! Shared test helpers: a temp "site" (inbox/outbox/… + config file), the
//! real `cutout` binary started as a process, picture generators, and audit
//! readers. Every integration test binary includes this with `mod support;`.
#![allow(dead_code)]

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub mod postgres;

pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cutout"))
}

/// A temp folder with a config file and the usual folders beside it.
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    /// `extra` is appended to the config (TOML). The config names one inbox
    /// `inbox` with a short settle unless `extra` has its own `[[inbox]]`.
    pub fn new(extra: &str) -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let site = Site { dir };
        let mut text = String::from("state_dir = \"state\"\nshutdown_grace = \"20s\"\n[retry]\ninitial_delay = \"50ms\"\nmax_delay = \"500ms\"\n");
        if !extra.contains("[[inbox]]") {
            text.push_str("[[inbox]]\npath = \"inbox\"\nsettle = \"300ms\"\n");
        }
        text.push_str(extra);
        site.write_config(&text);
        std::fs::create_dir_all(site.inbox()).expect("mkdir inbox");
        site
    }

    pub fn write_config(&self, text: &str) {
        std::fs::write(self.config(), text).expect("write config");
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn config(&self) -> PathBuf {
        self.root().join("cutout.toml")
    }
    pub fn inbox(&self) -> PathBuf {
        self.root().join("inbox")
    }
    pub fn outbox(&self) -> PathBuf {
        self.root().join("outbox")
    }
    pub fn archive(&self) -> PathBuf {
        self.root().join("archive")
    }
    pub fn rejected(&self) -> PathBuf {
        self.root().join("rejected")
    }
    pub fn failed(&self) -> PathBuf {
        self.root().join("failed")
    }
    pub fn audit_path(&self) -> PathBuf {
        self.root().join("state/audit.jsonl")
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin());
        c.args(args)
            .arg("--config")
            .arg(self.config())
            .current_dir(self.root())
            .env_remove("CUTOUT_CONFIG")
            // engine = "auto" must not find the developer's own models.
            .env("CUTOUT_MODELS_DIR", self.root().join("models"))
            .env("RUST_LOG", "info");
        c
    }

    /// `cutout process` to completion.
    pub fn process(&self, extra: &[&str]) -> Output {
        let mut args = vec!["process"];
        args.extend_from_slice(extra);
        self.cmd(&args)
            .stdin(Stdio::null())
            .output()
            .expect("run cutout process")
    }

    /// Start `cutout run` in the background (stderr to a file in the site).
    pub fn spawn_daemon(&self) -> Daemon {
        self.spawn_daemon_env(&[])
    }

    /// Start `cutout run` with extra environment variables (the service
    /// manager's: NOTIFY_SOCKET, WATCHDOG_USEC, CREDENTIALS_DIRECTORY…).
    /// Those the test process itself may have inherited are cleared first.
    pub fn spawn_daemon_env(&self, env: &[(&str, &std::ffi::OsStr)]) -> Daemon {
        let log = self.root().join(format!("daemon-{}.log", fastrand_u32()));
        let f = std::fs::File::create(&log).expect("log file");
        let mut cmd = self.cmd(&["run"]);
        for var in [
            "NOTIFY_SOCKET",
            "WATCHDOG_USEC",
            "WATCHDOG_PID",
            "STATE_DIRECTORY",
            "LOGS_DIRECTORY",
            "CONFIGURATION_DIRECTORY",
            "CREDENTIALS_DIRECTORY",
        ] {
            cmd.env_remove(var);
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn cutout run");
        Daemon { child, log }
    }

    /// Drop a file into the inbox (written to a hidden temp name, then
    /// renamed, as a careful uploader does).
    pub fn drop_file(&self, rel: &str, bytes: &[u8]) -> PathBuf {
        let p = self.inbox().join(rel);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(&p, bytes).expect("write input");
        p
    }

    pub fn audit(&self) -> Vec<serde_json::Value> {
        read_jsonl(&self.audit_path())
    }

    pub fn audit_events(&self, event: &str) -> Vec<serde_json::Value> {
        self.audit()
            .into_iter()
            .filter(|r| r["event"] == event)
            .collect()
    }

    /// Files (not folders) under `dir`, relative, sorted.
    pub fn files(&self, dir: &Path) -> Vec<String> {
        list_files(dir)
    }
}

pub fn list_files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| !e.file_type().is_dir())
        .filter_map(|e| {
            e.path()
                .strip_prefix(dir)
                .ok()
                .map(|p| p.to_string_lossy().into_owned())
        })
        .collect();
    v.sort();
    v
}

pub fn read_jsonl(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("audit line is JSON"))
        .collect()
}

fn fastrand_u32() -> u32 {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u64(Instant::now().elapsed().as_nanos() as u64);
    h.finish() as u32
}

/// A running `cutout run`.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }
    pub fn signal(&self, sig: i32) {
        // SAFETY: plain kill(2) on our own child.
        unsafe {
            libc::kill(self.pid(), sig);
        }
    }
    pub fn term(&self) {
        self.signal(libc::SIGTERM)
    }
    pub fn kill9(&mut self) {
        self.signal(libc::SIGKILL);
        let _ = self.child.wait();
    }
    /// Wait for exit; panics after `limit`.
    pub fn wait(&mut self, limit: Duration) -> std::process::ExitStatus {
        let t = Instant::now();
        loop {
            if let Some(s) = self.child.try_wait().expect("try_wait") {
                return s;
            }
            if t.elapsed() > limit {
                let _ = self.child.kill();
                panic!(
                    "daemon did not exit within {limit:?}; log:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Poll `cond` until true or panic with `what` after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let t = Instant::now();
    while !cond() {
        if t.elapsed() > limit {
            panic!("timed out after {limit:?} waiting for: {what}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Pictures.

/// A generated packshot: a dark red rounded object with a soft shadow on a
/// near-white backdrop with a gentle gradient and a little noise.
pub fn packshot(w: u32, h: u32, seed: u32) -> image::RgbImage {
    let mut rng = seed.wrapping_mul(2_654_435_761).max(1);
    let mut noise = move || {
        rng ^= rng << 13;
        rng ^= rng >> 17;
        rng ^= rng << 5;
        (rng % 7) as i32 - 3
    };
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    let (rx, ry) = (w as f32 * 0.28, h as f32 * 0.22);
    let min_r = rx.min(ry);
    image::RgbImage::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
        let bg = 245.0 - 12.0 * fy / h as f32;
        // soft shadow under the object
        let sd = ((fx - cx) / (rx * 1.1)).powi(2) + ((fy - (cy + ry * 1.05)) / (ry * 0.35)).powi(2);
        let shadow = if sd < 1.0 { 35.0 * (1.0 - sd) } else { 0.0 };
        let d = ((fx - cx) / rx).powi(2) + ((fy - cy) / ry).powi(2);
        // anti-aliased edge: coverage from the distance to the outline in pixels
        let coverage = ((1.0 - d.sqrt()) * min_r + 0.5).clamp(0.0, 1.0);
        let n = noise() as f32;
        let shade = 20.0 * (fy - cy) / ry;
        let obj = [
            150.0 - shade,
            25.0 + n.max(0.0),
            (35.0 - shade / 2.0).max(0.0),
        ];
        let v = (bg - shadow + n).clamp(0.0, 255.0);
        let back = [v, v, (v - 2.0).max(0.0)];
        let mix =
            |i: usize| (obj[i] * coverage + back[i] * (1.0 - coverage)).clamp(0.0, 255.0) as u8;
        image::Rgb([mix(0), mix(1), mix(2)])
    })
}

pub fn encode(img: &image::RgbImage, fmt: image::ImageFormat) -> Vec<u8> {
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), fmt)
        .expect("encode");
    out
}

pub fn jpeg(w: u32, h: u32, seed: u32) -> Vec<u8> {
    encode(&packshot(w, h, seed), image::ImageFormat::Jpeg)
}

pub fn png(w: u32, h: u32, seed: u32) -> Vec<u8> {
    encode(&packshot(w, h, seed), image::ImageFormat::Png)
}

/// Open a cut-out and check it has real transparency: transparent corners,
/// an opaque object in the middle.
pub fn assert_cutout(path: &Path) -> image::RgbaImage {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{} is not a readable picture: {e}", path.display()))
        .into_rgba8();
    let (w, h) = img.dimensions();
    for (x, y) in [(1, 1), (w - 2, 1), (1, h - 2), (w - 2, h - 2)] {
        let a = img.get_pixel(x, y)[3];
        assert!(
            a < 32,
            "{}: corner ({x},{y}) alpha {a}, expected transparent",
            path.display()
        );
    }
    let a = img.get_pixel(w / 2, h / 2)[3];
    assert!(
        a > 200,
        "{}: centre alpha {a}, expected opaque",
        path.display()
    );
    img
}

// ---------------------------------------------------------------------------
// Invariants (check them once the daemon has stopped or is idle).

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// The path an audit line names: absolute, or relative to the site.
fn on_site(site: &Site, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        site.root().join(p)
    }
}

/// What every audit log must satisfy, checked against the disk:
/// - every `output` an audit line names exists;
/// - every `moved_to` exists and holds the very bytes the line judged (its
///   `sha256`), with a `.reason.json` beside it for rejections and failures;
/// - each input is in exactly one place: nothing in archive/, rejected/ or
///   failed/ that no audit line moved there, no two lines moving to the
///   same place, and no input still in the inbox with the bytes of a line
///   that says it was moved away.
///
/// Returns the problems found (empty when all hold).
pub fn invariant_violations(site: &Site) -> Vec<String> {
    let mut bad = Vec::new();
    let mut moved = std::collections::HashSet::new();
    for line in site.audit() {
        let event = line["event"].as_str().unwrap_or_default();
        if event == "retry" {
            continue;
        }
        let job = &line["job"];
        if let Some(out) = line["output"].as_str() {
            if !on_site(site, out).exists() {
                bad.push(format!("job {job} ({event}): output {out} does not exist"));
            }
        }
        let Some(to) = line["moved_to"].as_str() else {
            continue;
        };
        let to = on_site(site, to);
        if !moved.insert(to.clone()) {
            bad.push(format!(
                "job {job}: two audit lines moved to {}",
                to.display()
            ));
        }
        match std::fs::read(&to) {
            Err(e) => bad.push(format!(
                "job {job} ({event}): moved_to {} is not there: {e}",
                to.display()
            )),
            Ok(bytes) => {
                if let Some(sha) = line["sha256"].as_str() {
                    if sha256_hex(&bytes) != sha {
                        bad.push(format!(
                            "job {job} ({event}): {} holds other bytes than the line judged",
                            to.display()
                        ));
                    }
                }
            }
        }
        if matches!(event, "rejected" | "failed") {
            let mut name = to.file_name().unwrap_or_default().to_os_string();
            name.push(".reason.json");
            if !to.with_file_name(name).exists() {
                bad.push(format!("job {job}: no reason file beside {}", to.display()));
            }
        }
        if let (Some(input), Some(sha)) = (line["input"].as_str(), line["sha256"].as_str()) {
            if let Ok(bytes) = std::fs::read(site.inbox().join(input)) {
                if sha256_hex(&bytes) == sha {
                    bad.push(format!(
                        "job {job}: {input} is still in the inbox though the line moved it"
                    ));
                }
            }
        }
    }
    for dir in [site.archive(), site.rejected(), site.failed()] {
        for f in list_files(&dir) {
            if f.ends_with(".reason.json") {
                continue;
            }
            if !moved.contains(&dir.join(&f)) {
                bad.push(format!(
                    "{} is in {} but no audit line moved it there",
                    f,
                    dir.display()
                ));
            }
        }
    }
    bad
}

/// Panic with every violated invariant (see `invariant_violations`).
pub fn assert_invariants(site: &Site) {
    let bad = invariant_violations(site);
    assert!(
        bad.is_empty(),
        "invariants violated:\n  {}",
        bad.join("\n  ")
    );
}
