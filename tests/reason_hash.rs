//! What a rejection says about the input's bytes: the real `cutout`
//! binary on real files, checked through its reason files and audit lines.
//! An empty file carries the SHA-256 of empty input; a file over
//! `limits.max_file_size` is deliberately not read and says so with
//! `sha256: null` and `code: file-too-large`.
//!
//! Must not: hard-code the hashes (they are computed here from the bytes).

mod support;

use sha2::{Digest, Sha256};
use support::*;

fn reason_file(site: &Site, rel: &str) -> serde_json::Value {
    let p = site.rejected().join(format!("{rel}.reason.json"));
    let t = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&t).expect("reason.json is JSON")
}

fn audit_for(site: &Site, rel: &str) -> serde_json::Value {
    let lines: Vec<_> = site
        .audit_events("rejected")
        .into_iter()
        .filter(|r| r["input"] == rel)
        .collect();
    assert_eq!(lines.len(), 1, "one rejected line for {rel}: {lines:?}");
    lines.into_iter().next().expect("one line")
}

#[test]
fn an_empty_file_carries_the_hash_of_empty_input_and_an_oversize_one_says_not_read() {
    // The empty file is judged at once (no upload is going to write it).
    let site = Site::new("empty_grace = \"0s\"\n[limits]\nmax_file_size = \"4 KiB\"\n");
    site.drop_file("zero.jpg", b"");
    let big = jpeg(400, 300, 11);
    assert!(big.len() > 4096, "the picture must be over the limit");
    site.drop_file("big.jpg", &big);
    let out = site.process(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let empty = hex::encode(Sha256::digest(b""));
    let r = reason_file(&site, "zero.jpg");
    assert_eq!(r["code"], "empty-file", "{r}");
    assert_eq!(r["sha256"], empty.as_str(), "{r}");
    let a = audit_for(&site, "zero.jpg");
    assert_eq!(a["code"], "empty-file", "{a}");
    assert_eq!(a["sha256"], empty.as_str(), "{a}");
    assert_eq!(a["bytes"], 0, "{a}");
    assert!(site.rejected().join("zero.jpg").is_file());

    // Over the limit: not read, so no hash; the code says why.
    let r = reason_file(&site, "big.jpg");
    assert_eq!(r["code"], "file-too-large", "{r}");
    assert!(r["sha256"].is_null(), "{r}");
    let a = audit_for(&site, "big.jpg");
    assert_eq!(a["code"], "file-too-large", "{a}");
    assert!(a["sha256"].is_null(), "{a}");
    assert_eq!(a["bytes"], big.len() as u64, "{a}");
    assert_eq!(
        std::fs::read(site.rejected().join("big.jpg")).expect("big.jpg moved"),
        big
    );
}
