//! The model files themselves: what `models/fetch.py` promises about them holds for the files
//! the agent loads.

use std::path::PathBuf;
use std::process::Command;

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// No model has a subnormal weight: Intel cores take a slow assist on each one (fr_feature's 8,938
/// made it ~5x slower there). `fetch.py --verify-only` checks each file's sha256 and counts them.
#[test]
fn no_model_has_a_subnormal_weight() {
    let root = checkout();
    let output = Command::new(root.join(".venv/bin/python"))
        .arg(root.join("models/fetch.py"))
        .arg("--verify-only")
        .output()
        .expect("run scripts/setup first: it creates .venv");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let counts: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("subnormal weights"))
        .collect();
    assert_eq!(counts.len(), 3, "one count per model:\n{stdout}");
    for line in counts {
        assert!(line.ends_with("subnormal weights 0"), "{line}");
    }
}
