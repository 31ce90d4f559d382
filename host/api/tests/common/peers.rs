//! Real peers started by the scripts in `tests/peers/`: each prints its work directory, whose
//! `env` file (`export NAME=value …`) says where it listens.

use std::path::PathBuf;
use std::process::Command;

/// A started peer: its work directory and the variables of its `env` file.
pub struct Started {
    pub dir: PathBuf,
    env: String,
}

impl Started {
    pub fn var(&self, name: &str) -> String {
        self.env
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("{name} in {}", self.env))
            .to_owned()
    }
}

/// Runs `tests/peers/<script>` with `args` and extra environment `envs`.
pub fn start(script: &str, args: &[&str], envs: &[(&str, String)]) -> Started {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/peers")
        .join(script);
    let out = Command::new("bash")
        .arg(&path)
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{script}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    Started { dir, env }
}
