//! Real clients uploading into the running daemon: OpenSSH `sftp` into an
//! `sshd` started on a loopback port, `rsync` (temp name then rename, and
//! `--inplace`), `cp` of a large file; and the intake regressions of issue
//! 11 (an empty file written after a pause, a decision on a file that
//! changed before its move). Tests whose tool is not installed are skipped,
//! saying why (scripts/test.sh installs them where it can).

mod support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(90);

fn sha(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A large picture (a noisy PNG of several megabytes).
fn large_png(seed: u32) -> Vec<u8> {
    let mut img = packshot(1600, 1200, seed);
    let mut r = seed.max(1);
    for p in img.pixels_mut() {
        r ^= r << 13;
        r ^= r >> 17;
        r ^= r << 5;
        p[0] = p[0].saturating_add((r % 40) as u8);
    }
    encode(&img, image::ImageFormat::Png)
}

fn start(site: &Site) -> Daemon {
    let d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    d
}

/// Wait until `names` are all archived, stop the daemon, and check each
/// one succeeded with the uploaded bytes, nothing was rejected, and the
/// invariants hold.
fn finish(site: &Site, mut d: Daemon, uploads: &[(&str, &[u8])]) {
    let t = std::time::Instant::now();
    while !uploads.iter().all(|(n, _)| site.archive().join(n).exists()) {
        assert!(
            t.elapsed() < LONG,
            "uploads not all archived: inbox {:?}, archive {:?}, audit {:?}\nlog:\n{}",
            site.files(&site.inbox()),
            site.files(&site.archive()),
            site.audit(),
            d.log_text()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.term();
    assert!(
        d.wait(LONG).success(),
        "daemon exit; log:\n{}",
        d.log_text()
    );
    assert!(
        site.files(&site.rejected()).is_empty(),
        "a complete upload was rejected: {:?}\n{}",
        site.files(&site.rejected()),
        d.log_text()
    );
    for (name, bytes) in uploads {
        let archived = std::fs::read(site.archive().join(name)).expect("archived");
        assert_eq!(sha(&archived), sha(bytes), "{name}: archived bytes differ");
        let stem = Path::new(name).file_stem().expect("stem").to_string_lossy();
        assert_cutout(&site.outbox().join(format!("{stem}.png")));
    }
    assert_eq!(site.audit_events("succeeded").len(), uploads.len());
    assert_invariants(site);
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// An sshd on a loopback port with a fresh host key, letting the current
/// user in with a fresh client key. Killed on drop.
struct Sshd {
    child: std::process::Child,
    port: u16,
    key: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn keygen(path: &Path) {
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen");
    assert!(ok.success(), "ssh-keygen failed");
}

fn start_sshd() -> Result<Sshd, String> {
    let sshd = Path::new("/usr/sbin/sshd");
    if !sshd.exists() || !have("sftp") || !have("ssh-keygen") {
        return Err(
            "sshd/sftp are not installed (apt-get install openssh-server openssh-client)".into(),
        );
    }
    // sshd wants its privilege-separation folder (made by the package's
    // service, which is not running here).
    let _ = std::fs::create_dir_all("/run/sshd");
    let dir = tempfile::tempdir().expect("tempdir");
    let (host, key) = (dir.path().join("host"), dir.path().join("client"));
    keygen(&host);
    keygen(&key);
    let auth = dir.path().join("authorized_keys");
    std::fs::copy(key.with_extension("pub"), &auth).expect("authorized_keys");
    let port = free_port();
    let cfg = dir.path().join("sshd_config");
    std::fs::write(
        &cfg,
        format!(
            "ListenAddress 127.0.0.1\nPort {port}\nHostKey {}\nAuthorizedKeysFile {}\n\
             PidFile {}\nStrictModes no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n\
             PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nUsePAM no\n\
             Subsystem sftp internal-sftp\n",
            host.display(),
            auth.display(),
            dir.path().join("sshd.pid").display()
        ),
    )
    .expect("sshd_config");
    let log = std::fs::File::create(dir.path().join("sshd.log")).expect("log");
    let child = Command::new(sshd)
        .args(["-D", "-e", "-f"])
        .arg(&cfg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .map_err(|e| format!("cannot start sshd: {e}"))?;
    let s = Sshd {
        child,
        port,
        key,
        dir,
    };
    let t = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if t.elapsed() > Duration::from_secs(20) {
            let log = std::fs::read_to_string(s.dir.path().join("sshd.log")).unwrap_or_default();
            return Err(format!("sshd did not listen on port {port}: {log}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(s)
}

#[test]
fn sftp_uploads_into_the_running_daemon_are_all_processed() {
    let sshd = match start_sshd() {
        Ok(s) => s,
        Err(why) => {
            println!("skipped: {why}");
            return;
        }
    };
    let site = Site::new("[[inbox]]\npath = \"inbox\"\nsettle = \"1s\"\n");
    let d = start(&site);
    let pics: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("up{i}.png"), large_png(40 + i)))
        .collect();
    let mut batch = String::new();
    for (name, bytes) in &pics {
        let local = sshd.dir.path().join(name);
        std::fs::write(&local, bytes).expect("local file");
        batch.push_str(&format!(
            "put {} {}\n",
            local.display(),
            site.inbox().join(name).display()
        ));
    }
    let bf = sshd.dir.path().join("batch");
    std::fs::write(&bf, batch).expect("batch");
    let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
    let out = Command::new("sftp")
        .args(["-q", "-F", "/dev/null", "-o", "BatchMode=yes"])
        .args([
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
        ])
        .arg("-i")
        .arg(&sshd.key)
        .args(["-P", &sshd.port.to_string(), "-b"])
        .arg(&bf)
        .arg(format!("{user}@127.0.0.1"))
        .stdin(Stdio::null())
        .output()
        .expect("run sftp");
    assert!(
        out.status.success(),
        "sftp failed: {}\nsshd: {}",
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(sshd.dir.path().join("sshd.log")).unwrap_or_default()
    );
    let uploads: Vec<(&str, &[u8])> = pics.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    finish(&site, d, &uploads);
}

#[test]
fn rsync_uploads_with_a_temp_name_and_in_place_are_processed() {
    if !have("rsync") {
        println!("skipped: rsync is not installed (apt-get install rsync)");
        return;
    }
    let site = Site::new("[[inbox]]\npath = \"inbox\"\nsettle = \"1s\"\n");
    let d = start(&site);
    let src = tempfile::tempdir().expect("src");
    let (a, b) = (large_png(50), large_png(51));
    std::fs::write(src.path().join("renamed.png"), &a).expect("a");
    std::fs::write(src.path().join("inplace.png"), &b).expect("b");
    // Default rsync: written as .renamed.png.XXXXXX, then renamed in.
    let st = Command::new("rsync")
        .arg(src.path().join("renamed.png"))
        .arg(site.inbox().join(""))
        .status()
        .expect("rsync");
    assert!(st.success());
    // --inplace, slowed down so the daemon sees it growing.
    let st = Command::new("rsync")
        .args(["--inplace", "--bwlimit=4000"])
        .arg(src.path().join("inplace.png"))
        .arg(site.inbox().join(""))
        .status()
        .expect("rsync --inplace");
    assert!(st.success());
    finish(&site, d, &[("renamed.png", &a), ("inplace.png", &b)]);
}

#[test]
fn cp_of_a_large_file_is_processed_once_complete() {
    let site = Site::new("[[inbox]]\npath = \"inbox\"\nsettle = \"1s\"\n");
    let d = start(&site);
    let src = tempfile::tempdir().expect("src");
    let big = large_png(60);
    assert!(big.len() > 2_000_000, "large: {} bytes", big.len());
    std::fs::write(src.path().join("big.png"), &big).expect("big");
    let st = Command::new("cp")
        .arg(src.path().join("big.png"))
        .arg(site.inbox().join("big.png"))
        .status()
        .expect("cp");
    assert!(st.success());
    finish(&site, d, &[("big.png", &big)]);
}

/// Issue 11, point 1: an upload client creates the file, then writes
/// after a pause longer than `settle`; `empty_grace` is left at its 60 s
/// default.
fn created_empty_then_written(settle: &str, pause: Duration, seed: u32) {
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"{settle}\"\n"
    ));
    let d = start(&site);
    let pics: Vec<(String, Vec<u8>)> = (0..3)
        .map(|i| (format!("late{i}.jpg"), jpeg(300, 200, seed + i)))
        .collect();
    let mut files = Vec::new();
    for (name, _) in &pics {
        files.push(std::fs::File::create(site.inbox().join(name)).expect("create"));
    }
    std::thread::sleep(pause);
    for (f, (_, bytes)) in files.iter_mut().zip(&pics) {
        f.write_all(bytes).expect("write");
    }
    drop(files);
    let uploads: Vec<(&str, &[u8])> = pics.iter().map(|(n, b)| (n.as_str(), &b[..])).collect();
    finish(&site, d, &uploads);
}

#[test]
fn created_empty_and_written_3_5_s_later_with_the_default_settle_is_processed() {
    created_empty_then_written("2s", Duration::from_millis(3500), 70);
}

#[test]
fn created_empty_and_written_300_ms_later_with_settle_0_is_processed() {
    created_empty_then_written("0s", Duration::from_millis(300), 75);
}

/// An empty file nobody writes is still rejected, once `empty_grace` has
/// passed since it last changed.
#[test]
fn an_empty_file_left_empty_is_rejected_after_empty_grace() {
    let site = Site::new("[[inbox]]\npath = \"inbox\"\nsettle = \"0s\"\nempty_grace = \"2s\"\n");
    let mut d = start(&site);
    std::fs::File::create(site.inbox().join("nothing.jpg")).expect("create");
    wait_until(LONG, "rejected", || {
        site.rejected().join("nothing.jpg.reason.json").exists()
    });
    d.term();
    assert!(d.wait(LONG).success());
    let r = site.audit_events("rejected");
    assert_eq!(r.len(), 1);
    assert_eq!(r[0]["code"], "empty-file");
    assert!(site.rejected().join("nothing.jpg").exists());
    assert_invariants(&site);
}

// ---------------------------------------------------------------------------
// Issue 11, point 2: a decision on an input that changed before its move.
// A slow hosted provider (the fake, on 127.0.0.1) keeps the first version
// in work while the test replaces it with a second one.

fn slow_rembg_site(fake: &fake_provider::FakeProvider) -> Site {
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"0s\"\nprovider = \"r\"\n\
         [providers.r]\nkind = \"rembg-com\"\nbase_url = \"{}\"\nusage_url = \"{}\"\n\
         api_key_file = \"rembg.key\"\nrequests_per_second = 50\nconcurrency = 4\n\
         timeout = \"20s\"\nrecheck_interval = \"200ms\"\n",
        fake.base_url_rembg(),
        fake.usage_url_rembg(),
    ));
    std::fs::write(site.root().join("rembg.key"), "test-rembg-key\n").expect("key file");
    fake.set_latency(fake_provider::Api::Rembg, Duration::from_secs(3));
    site
}

/// Replace `name` with `bytes` (written beside, renamed over) while the
/// provider has the first version: its job is claimed in the state
/// database (read, hashed, checked) and the provider takes 3 s to answer.
fn replace_while_at_the_provider(site: &Site, name: &str, bytes: &[u8]) {
    let db = site.root().join("state/state.sqlite3");
    wait_until(LONG, "first version claimed", || {
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .and_then(|c| c.query_row("SELECT COUNT(*) FROM jobs", [], |r| r.get::<_, i64>(0)))
            .is_ok_and(|n| n > 0)
    });
    let tmp = site.root().join("replacement");
    std::fs::write(&tmp, bytes).expect("write v2");
    std::fs::rename(&tmp, site.inbox().join(name)).expect("replace");
}

#[test]
fn a_failure_of_a_version_replaced_before_its_move_is_withdrawn_and_the_new_one_processed() {
    use fake_provider::{Api, Config, FakeProvider, Fault, FaultRule};
    let fake = FakeProvider::start(Config::default());
    let site = slow_rembg_site(&fake);
    fake.inject(FaultRule::next(1, Fault::Invalid("refused".into())).api(Api::Rembg));
    let d = start(&site);
    let (v1, v2) = (jpeg(200, 150, 81), jpeg(200, 150, 82));
    std::fs::write(site.inbox().join("x.jpg"), &v1).expect("v1");
    replace_while_at_the_provider(&site, "x.jpg", &v2);
    finish(&site, d, &[("x.jpg", &v2)]);
    assert!(
        site.files(&site.failed()).is_empty(),
        "nothing failed that is on disk"
    );
    assert!(
        site.audit()
            .iter()
            .all(|l| l["sha256"] != sha(&v1).as_str()),
        "no line about the replaced version's withdrawn failure"
    );
    // The state database and `cutout status` count no failure either: the
    // decision is withdrawn, not kept as a failure nobody can find.
    let out = site.cmd(&["status"]).output().expect("status");
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}");
    let line = |k: &str| {
        s.lines()
            .find(|l| l.trim_start().starts_with(k))
            .map(str::trim)
    };
    assert_eq!(line("failed"), None, "{s}");
    assert_eq!(line("withdrawn"), Some("withdrawn    1"), "{s}");
    assert_eq!(line("succeeded"), Some("succeeded    1"), "{s}");
    assert!(!s.contains("last errors"), "{s}");
}

#[test]
fn a_success_of_a_version_replaced_before_its_move_names_no_move_and_the_new_one_is_processed() {
    use fake_provider::{Config, FakeProvider};
    let fake = FakeProvider::start(Config::default());
    let site = slow_rembg_site(&fake);
    let mut d = start(&site);
    let (v1, v2) = (jpeg(200, 150, 91), jpeg(200, 150, 92));
    std::fs::write(site.inbox().join("y.jpg"), &v1).expect("v1");
    replace_while_at_the_provider(&site, "y.jpg", &v2);
    wait_until(LONG, "both versions done", || {
        site.audit_events("succeeded").len() == 2 && site.files(&site.inbox()).is_empty()
    });
    d.term();
    assert!(d.wait(LONG).success());
    let lines = site.audit_events("succeeded");
    let old = lines
        .iter()
        .find(|l| l["sha256"] == sha(&v1).as_str())
        .expect("v1 line");
    let new = lines
        .iter()
        .find(|l| l["sha256"] == sha(&v2).as_str())
        .expect("v2 line");
    assert!(old["moved_to"].is_null(), "v1 was never moved: {old}");
    assert!(new["moved_to"].is_string(), "v2 was archived: {new}");
    assert_eq!(site.files(&site.archive()), vec!["y.jpg".to_string()]);
    assert_eq!(
        sha(&std::fs::read(site.archive().join("y.jpg")).expect("archived")),
        sha(&v2)
    );
    assert_invariants(&site);
}
