//! Faults and hostile inputs: the validator's whole table plus the odd files
//! real inboxes see, a full disk, a read-only outbox, and an inbox folder
//! deleted under the running daemon. The daemon must stay up, lose nothing,
//! and resume by itself.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use support::*;

const LONG: Duration = Duration::from_secs(120);

/// What a corpus file must become.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// A cut-out with these (width, height): orientation applied.
    Cutout(u32, u32),
    /// Rejected with this code.
    Rejected(&'static str),
}

fn with_crc(mut png: Vec<u8>, chunk_start: usize, data_len: usize) -> Vec<u8> {
    let end = chunk_start + 8 + data_len;
    let crc = crc32fast::hash(&png[chunk_start + 4..end]);
    png[end..end + 4].copy_from_slice(&crc.to_be_bytes());
    png
}

fn exif_rotated_jpeg(w: u32, h: u32) -> Vec<u8> {
    let base = jpeg(w, h, 77);
    let tiff: Vec<u8> = [
        b"Exif\0\0".as_slice(),
        b"II*\0\x08\0\0\0",
        &[1, 0],
        &[0x12, 0x01, 3, 0, 1, 0, 0, 0, 8, 0, 0, 0], // orientation 8: rotate 270° cw
        &[0, 0, 0, 0],
    ]
    .concat();
    let mut out = vec![0xFF, 0xD8, 0xFF, 0xE1];
    out.extend_from_slice(&((tiff.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&tiff);
    out.extend_from_slice(&base[2..]);
    out
}

fn huge_exif_jpeg() -> Vec<u8> {
    let base = jpeg(300, 200, 78);
    let mut out = vec![0xFF, 0xD8];
    // three maximal APP1 segments (~196 KB of metadata) before the picture
    for i in 0..3u8 {
        out.extend_from_slice(&[0xFF, 0xE1, 0xFF, 0xFF]);
        let mut payload = b"Exif\0\0".to_vec();
        payload.resize(0xFFFF - 2, i);
        out.extend_from_slice(&payload);
    }
    out.extend_from_slice(&base[2..]);
    out
}

fn cmyk_jpeg(w: u32, h: u32) -> Vec<u8> {
    let rgb = packshot(w, h, 79);
    let mut cmyk = Vec::with_capacity((w * h * 4) as usize);
    for p in rgb.pixels() {
        let (r, g, b) = (
            p[0] as f32 / 255.0,
            p[1] as f32 / 255.0,
            p[2] as f32 / 255.0,
        );
        let k = 1.0 - r.max(g).max(b);
        let d = (1.0 - k).max(1e-6);
        for v in [(1.0 - r - k) / d, (1.0 - g - k) / d, (1.0 - b - k) / d, k] {
            cmyk.push((v * 255.0).round().clamp(0.0, 255.0) as u8);
        }
    }
    let mut out = Vec::new();
    let enc = jpeg_encoder::Encoder::new(&mut out, 90);
    enc.encode(&cmyk, w as u16, h as u16, jpeg_encoder::ColorType::Cmyk)
        .expect("cmyk jpeg");
    out
}

fn animated_webp_header() -> Vec<u8> {
    // RIFF/WEBP with a VP8X chunk whose animation flag is set, then ANIM.
    let mut body = b"WEBP".to_vec();
    body.extend_from_slice(b"VP8X");
    body.extend_from_slice(&10u32.to_le_bytes());
    body.extend_from_slice(&[0x02, 0, 0, 0]);
    body.extend_from_slice(&[99, 0, 0, 99, 0, 0]); // 100x100
    body.extend_from_slice(b"ANIM");
    body.extend_from_slice(&6u32.to_le_bytes());
    body.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut out = b"RIFF".to_vec();
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.extend_from_slice(&body);
    out
}

fn lossy_webp(w: u32, h: u32) -> Vec<u8> {
    let rgb = packshot(w, h, 80);
    let enc = webp::Encoder::from_rgb(rgb.as_raw(), w, h);
    enc.encode(80.0).to_vec()
}

fn png16(w: u32, h: u32) -> Vec<u8> {
    let rgb = packshot(w, h, 81);
    let img = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(w, h, |x, y| {
        let p = rgb.get_pixel(x, y);
        image::Rgb([p[0] as u16 * 257, p[1] as u16 * 257, p[2] as u16 * 257])
    });
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb16(img)
        .write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("png16");
    out
}

fn grey_png(w: u32, h: u32) -> Vec<u8> {
    let g = image::DynamicImage::ImageRgb8(packshot(w, h, 82)).into_luma8();
    let mut out = Vec::new();
    g.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .expect("grey");
    out
}

#[test]
fn hostile_corpus_ends_where_the_table_says() {
    // zero.jpg is judged at once (no upload is going to write it).
    let site = Site::new("empty_grace = \"0s\"\n");
    let good_png = png(200, 150, 83);
    let good_jpeg = jpeg(200, 150, 84);
    let mut bomb = good_png.clone();
    bomb[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    bomb[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    let bomb = with_crc(bomb, 8, 13);
    let mut bad_crc = good_png.clone();
    bad_crc[29] ^= 0xFF; // IHDR CRC
    let mut tall = good_png.clone();
    tall[20..24].copy_from_slice(&20_000u32.to_be_bytes());
    let tall = with_crc(tall, 8, 13);

    let corpus: Vec<(&str, Vec<u8>, Expect)> = vec![
        ("zero.jpg", vec![], Expect::Rejected("empty-file")),
        (
            "truncated.jpg",
            good_jpeg[..good_jpeg.len() * 2 / 3].to_vec(),
            Expect::Rejected("truncated-image"),
        ),
        (
            "truncated.png",
            good_png[..good_png.len() - 40].to_vec(),
            Expect::Rejected("truncated-image"),
        ),
        ("bomb.png", bomb, Expect::Rejected("image-too-wide")),
        ("tall.png", tall, Expect::Rejected("image-too-tall")),
        (
            "text.jpg",
            b"Lorem ipsum dolor sit amet\n".to_vec(),
            Expect::Rejected("not-an-image"),
        ),
        (
            "anim.gif",
            b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec(),
            Expect::Rejected("unsupported-format"),
        ),
        (
            "bitmap.jpg",
            [b"BM".as_slice(), &[0u8; 60]].concat(),
            Expect::Rejected("unsupported-format"),
        ),
        (
            "phone.jpg",
            [b"\0\0\0\x18ftypheic".as_slice(), &[0u8; 40]].concat(),
            Expect::Rejected("unsupported-format"),
        ),
        ("badcrc.png", bad_crc, Expect::Rejected("corrupt-image")),
        (
            "anim.webp",
            animated_webp_header(),
            Expect::Rejected("animated-image"),
        ),
        ("huge-exif.jpg", huge_exif_jpeg(), Expect::Cutout(300, 200)),
        ("sixteen.png", png16(180, 120), Expect::Cutout(180, 120)),
        ("cmyk.jpg", cmyk_jpeg(200, 160), Expect::Cutout(200, 160)),
        (
            "rotated.jpg",
            exif_rotated_jpeg(240, 160),
            Expect::Cutout(160, 240),
        ),
        ("grey.png", grey_png(160, 120), Expect::Cutout(160, 120)),
        ("lossy.webp", lossy_webp(200, 150), Expect::Cutout(200, 150)),
        (
            "named-wrong.png",
            good_jpeg.clone(),
            Expect::Cutout(200, 150),
        ),
    ];
    for (name, bytes, _) in &corpus {
        site.drop_file(name, bytes);
    }
    // A symlink to a file outside the inbox, and a FIFO.
    let secret = site.root().join("secret.jpg");
    std::fs::write(&secret, &good_jpeg).expect("write");
    std::os::unix::fs::symlink(&secret, site.inbox().join("link.jpg")).expect("symlink");
    let fifo =
        std::ffi::CString::new(site.inbox().join("pipe.jpg").to_str().expect("utf8")).expect("c");
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0, "mkfifo");

    let out = site.process(&[]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    for (name, _, expect) in &corpus {
        let stem = Path::new(name)
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("stem");
        match expect {
            Expect::Cutout(w, h) => {
                let img = assert_cutout(&site.outbox().join(format!("{stem}.png")));
                assert_eq!(img.dimensions(), (*w, *h), "{name}: size/orientation");
                assert!(site.archive().join(name).exists(), "{name} archived");
            }
            Expect::Rejected(code) => {
                let reason = site.rejected().join(format!("{name}.reason.json"));
                let v: serde_json::Value = serde_json::from_str(
                    &std::fs::read_to_string(&reason).unwrap_or_else(|e| panic!("{name}: {e}")),
                )
                .expect("json");
                assert_eq!(v["code"], *code, "{name}: {v}");
                assert!(
                    site.rejected().join(name).exists(),
                    "{name} moved to rejected/"
                );
            }
        }
    }
    for special in ["link.jpg", "pipe.jpg"] {
        let v: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(site.rejected().join(format!("{special}.reason.json")))
                .expect("reason"),
        )
        .expect("json");
        assert_eq!(v["code"], "not-a-regular-file", "{special}");
    }
    let moved_link = site.rejected().join("link.jpg");
    assert!(std::fs::symlink_metadata(&moved_link)
        .expect("moved")
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read(&secret).expect("target untouched"), good_jpeg);
    assert!(site.files(&site.inbox()).is_empty());
}

/// Mount a tmpfs at `dir` (root only; None with a printed reason otherwise).
fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
    std::fs::create_dir_all(dir).ok()?;
    let ok = Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !ok {
        eprintln!(
            "SKIPPED: cannot mount a tmpfs at {} (needs root and mount(8))",
            dir.display()
        );
        return None;
    }
    Some(Mount(dir.to_path_buf()))
}

struct Mount(std::path::PathBuf);

impl Mount {
    fn remount(&self, opts: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.0)
            .status()
            .expect("mount")
            .success();
        assert!(ok, "remount {opts}");
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_outbox_disk_keeps_inputs_and_resumes_when_space_returns() {
    let site = Site::new("[queue]\nconcurrency = 2\n");
    let Some(m) = tmpfs(&site.outbox(), "300k") else {
        return;
    };
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    let mut names = Vec::new();
    for i in 0..12u32 {
        let n = format!("big{i:02}.png");
        site.drop_file(&n, &png(400, 300, 500 + i));
        names.push(n);
    }
    wait_until(LONG, "disk-full reported", || {
        d.log_text().contains("No space left")
    });
    assert!(
        d.child.try_wait().expect("wait").is_none(),
        "daemon stays up"
    );
    assert!(
        site.files(&site.failed()).is_empty(),
        "a full disk is not the file's fault"
    );
    let left = site.files(&site.inbox()).len();
    assert!(
        left > 0,
        "inputs without a durable result stay in the inbox"
    );
    m.remount("size=50m");
    wait_until(LONG, "all done after space returns", || {
        site.files(&site.inbox()).is_empty()
    });
    wait_until(LONG, "all audited", || {
        site.audit_events("succeeded").len() == 12
    });
    d.term();
    assert!(d.wait(LONG).success());
    assert_eq!(site.files(&site.archive()).len(), 12);
    for n in &names {
        let stem = n.trim_end_matches(".png");
        assert_cutout(&site.outbox().join(format!("{stem}.png")));
    }
    assert!(site
        .files(&site.outbox())
        .iter()
        .all(|f| !f.ends_with(".cutout-tmp")));
}

#[test]
fn a_read_only_outbox_mid_run_then_writable_again() {
    let site = Site::new("");
    let Some(m) = tmpfs(&site.outbox(), "50m") else {
        return;
    };
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    site.drop_file("first.jpg", &jpeg(200, 150, 600));
    wait_until(LONG, "first done", || {
        site.outbox().join("first.png").exists()
    });
    m.remount("ro");
    site.drop_file("second.jpg", &jpeg(200, 150, 601));
    wait_until(LONG, "read-only reported", || {
        d.log_text().contains("Read-only file system")
    });
    assert!(
        site.inbox().join("second.jpg").exists(),
        "kept in the inbox"
    );
    assert!(site.files(&site.failed()).is_empty());
    m.remount("rw");
    wait_until(LONG, "second done", || {
        site.outbox().join("second.png").exists()
    });
    wait_until(LONG, "second archived", || {
        site.archive().join("second.jpg").exists()
    });
    d.term();
    assert!(d.wait(LONG).success());
    assert_eq!(site.audit_events("succeeded").len(), 2);
}

#[test]
fn the_inbox_folder_deleted_and_recreated_under_the_daemon() {
    let site = Site::new("");
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    site.drop_file("before.jpg", &jpeg(160, 120, 700));
    wait_until(LONG, "before done", || {
        site.outbox().join("before.png").exists()
    });
    std::fs::remove_dir_all(site.inbox()).expect("rm inbox");
    std::thread::sleep(Duration::from_millis(300));
    std::fs::create_dir_all(site.inbox()).expect("mkdir inbox");
    site.drop_file("after.jpg", &jpeg(160, 120, 701));
    wait_until(LONG, "after done", || {
        site.outbox().join("after.png").exists()
    });
    d.term();
    assert!(d.wait(LONG).success());
    assert_eq!(site.audit_events("succeeded").len(), 2);
}

#[test]
fn an_unwritable_rejected_folder_delays_the_move_but_decides_once() {
    let site = Site::new("");
    let Some(m) = tmpfs(&site.rejected(), "10m") else {
        return;
    };
    let mut d = site.spawn_daemon();
    wait_until(LONG, "daemon ready", || {
        d.log_text().contains("cutout is running")
    });
    m.remount("ro");
    site.drop_file("bad.jpg", b"this is not a picture");
    site.drop_file("good.jpg", &jpeg(160, 120, 800));
    wait_until(LONG, "read-only reported", || {
        d.log_text().contains("Read-only file system")
    });
    wait_until(LONG, "good one done", || {
        site.outbox().join("good.png").exists()
    });
    assert!(
        site.inbox().join("bad.jpg").exists(),
        "kept until it can be moved"
    );
    // let it retry against the read-only folder a few times
    std::thread::sleep(Duration::from_secs(3));
    m.remount("rw");
    wait_until(LONG, "bad.jpg moved", || {
        site.rejected().join("bad.jpg").exists()
    });
    wait_until(LONG, "reason written", || {
        site.rejected().join("bad.jpg.reason.json").exists()
    });
    d.term();
    assert!(d.wait(LONG).success());
    let lines: Vec<_> = site
        .audit()
        .into_iter()
        .filter(|r| r["input"] == "bad.jpg")
        .collect();
    assert_eq!(lines.len(), 1, "one decision, one audit line: {lines:?}");
    assert_eq!(lines[0]["event"], "rejected");
}
