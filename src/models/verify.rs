//! Checking a model or runtime file against the catalogue's digests.
//!
//! Owns: hashing a file once (SHA-256 and MD5 in one pass) and deciding
//! whether it is a known good copy. Must not: write, move or fetch files.

use std::io::Read;
use std::path::Path;

use md5::Md5;
use sha2::{Digest, Sha256};

use super::catalogue::{ModelEntry, RuntimeEntry};

/// A file's digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digests {
    pub sha256: String,
    pub md5: String,
    pub len: u64,
}

/// Hash `path` (SHA-256 and MD5, one read).
pub fn digests(path: &Path) -> std::io::Result<Digests> {
    let mut f = std::fs::File::open(path)?;
    let mut sha = Sha256::new();
    let mut md5 = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        md5.update(&buf[..n]);
        len += n as u64;
    }
    Ok(Digests {
        sha256: hex::encode(sha.finalize()),
        md5: hex::encode(md5.finalize()),
        len,
    })
}

/// What a file's digests say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// One of the catalogue's SHA-256s.
    Sha256(String),
    /// rembg's published MD5 (no SHA-256 recorded for rembg's own file).
    RembgMd5(String),
    /// Neither: a damaged or different file.
    Mismatch { sha256: String },
    /// Nothing recorded to check it against.
    NoDigest { sha256: String },
}

impl Verdict {
    pub fn ok(&self) -> bool {
        matches!(self, Verdict::Sha256(_) | Verdict::RembgMd5(_))
    }

    /// `SHA-256 ok (…)`, `MD5 ok as published by rembg (…)`, `MISMATCH (…)`.
    pub fn describe(&self) -> String {
        match self {
            Verdict::Sha256(d) => format!("SHA-256 ok ({d})"),
            Verdict::RembgMd5(d) => format!("MD5 ok as published by rembg ({d})"),
            Verdict::Mismatch { sha256 } => {
                format!("MISMATCH: SHA-256 {sha256} is not a known good copy")
            }
            Verdict::NoDigest { sha256 } => {
                format!("no digest recorded for this machine (SHA-256 {sha256})")
            }
        }
    }
}

/// Judge a model file's digests.
pub fn judge_model(entry: &ModelEntry, d: &Digests) -> Verdict {
    if entry.sha256.contains(&d.sha256.as_str()) {
        Verdict::Sha256(d.sha256.clone())
    } else if entry.rembg_md5 == Some(d.md5.as_str()) {
        Verdict::RembgMd5(d.md5.clone())
    } else {
        Verdict::Mismatch {
            sha256: d.sha256.clone(),
        }
    }
}

/// Judge the runtime library's digests.
pub fn judge_runtime(entry: &RuntimeEntry, d: &Digests) -> Verdict {
    match entry.sha256 {
        Some(want) if want == d.sha256 => Verdict::Sha256(d.sha256.clone()),
        Some(_) => Verdict::Mismatch {
            sha256: d.sha256.clone(),
        },
        None => Verdict::NoDigest {
            sha256: d.sha256.clone(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::catalogue;

    #[test]
    fn digests_of_a_known_text() {
        let dir = std::env::temp_dir().join(format!("cutout-verify-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("abc");
        std::fs::write(&f, b"abc").unwrap();
        let d = digests(&f).unwrap();
        assert_eq!(
            d.sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(d.md5, "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(d.len, 3);
        let entry = catalogue::find("u2netp").unwrap();
        assert!(!judge_model(entry, &d).ok());
        let rembg_copy = Digests {
            md5: "8e83ca70e441ab06c318d82300c84806".into(),
            ..d.clone()
        };
        assert!(matches!(
            judge_model(entry, &rembg_copy),
            Verdict::RembgMd5(_)
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
