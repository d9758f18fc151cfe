//! The `fake-provider` binary: prints its address, serves both APIs with
//! the flags given, writes the request log as JSON lines, and is killed by
//! its pid.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn binary_serves_and_logs_json_lines() {
    let log = std::env::temp_dir().join(format!("fake-provider-bin-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .args([
            "--port",
            "0",
            "--key",
            "K",
            "--latency-ms",
            "1",
            "--rate-limit",
            "100",
        ])
        .arg("--log")
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(base.starts_with("http://127.0.0.1:"));
    let addr = base.trim_start_matches("http://");

    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET /api/v1/auth/me HTTP/1.1\r\nHost: x\r\nAuthorization: ApiKey K\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"credits\":100000"), "{resp}");

    // the log line is flushed as soon as the request is answered
    let mut text = String::new();
    for _ in 0..50 {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if !text.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let v: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
    assert_eq!(v["path"], "/api/v1/auth/me");
    assert_eq!(v["status"], 200);
    assert_eq!(v["endpoint"], "verging_me");

    child.kill().unwrap();
    child.wait().unwrap();
    let _ = std::fs::remove_file(&log);
}

#[test]
fn binary_rejects_unknown_flags() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .arg("--nope")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_fake-provider"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("--rate-limit"));
}
