//! What the runtime's integration tests share: the test plugins built by
//! scripts/build-plugins.sh, and tight limits.

use std::time::Duration;

use infrapilot_plugin_runtime::{Limits, Manifest};

pub fn root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A test plugin built by scripts/build-plugins.sh: its component (`<target dir>/plugins/<crate>.wasm`)
/// and its manifest (`plugins/<dir>/manifest.json`).
pub fn plugin_files(crate_name: &str, dir: &str) -> (Vec<u8>, Manifest) {
    let target = match std::env::var("CARGO_TARGET_DIR") {
        Ok(dir) => root().join(dir),
        Err(_) => root().join("target"),
    };
    let wasm = target.join(format!("plugins/{crate_name}.wasm"));
    let component = std::fs::read(&wasm).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; build the plugins first: scripts/build-plugins.sh",
            wasm.display()
        )
    });
    let manifest = Manifest::parse(
        &std::fs::read(root().join(format!("plugins/{dir}/manifest.json"))).unwrap(),
    )
    .unwrap();
    (component, manifest)
}

/// Limits tight enough that a misbehaving plugin is stopped quickly.
pub fn limits() -> Limits {
    Limits {
        hook_deadline: Duration::from_millis(500),
        memory_bytes: 32 << 20,
        max_log_lines: 50,
        max_output_bytes: 64 << 10,
        http_timeout: Duration::from_secs(2),
    }
}
