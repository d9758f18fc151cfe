//! The module graph of `src/` stays free of import cycles: runs
//! `scripts/check-cycles.sh` (the same check a person runs by hand) and fails
//! with its report when any two modules import each other, directly or
//! through others.
//!
//! Must not: change the source tree.

use std::path::Path;
use std::process::Command;

#[test]
fn no_import_cycles_in_src() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new("bash")
        .arg(root.join("scripts/check-cycles.sh"))
        .current_dir(root)
        .output()
        .expect("run scripts/check-cycles.sh (needs bash and python3)");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains(" cycle(s) among "),
        "the checker did not run: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "import cycles in src/ (break them: move the shared type to the leaf side):\n{report}"
    );
}
