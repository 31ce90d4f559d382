//! The agent's state directory: `agent.key` (never leaves the node), `agent.crt`, `ca.crt` and
//! `agent.json` (agent id, host endpoint). Secrets are written with mode 0600 atomically
//! (temporary file, fsync, rename).

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "no trust material in {0}: enrol first (infrapilot-agent enroll --endpoint … --token …)"
    )]
    NotEnrolled(PathBuf),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is readable by others (mode {1:o}); it must be 0600")]
    Permissions(PathBuf, u32),
    #[error("{0} is corrupt: {1}")]
    Corrupt(PathBuf, String),
}

/// What the agent stores about its enrollment.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Identity {
    pub agent_id: String,
    pub name: String,
    /// The host's HTTPS endpoint, e.g. `https://pilot.example.com`.
    pub endpoint: String,
    /// Where the mTLS gRPC session is opened (told by the host at enrollment).
    pub grpc_endpoint: String,
    pub certificate_expires_at: String,
}

/// Everything needed to open the mTLS session.
#[derive(Debug, Clone)]
pub struct TrustMaterial {
    pub identity: Identity,
    pub key_pem: String,
    pub certificate_pem: String,
    pub ca_certificate_pem: String,
}

pub struct StateDir {
    root: PathBuf,
}

const KEY: &str = "agent.key";
const CERT: &str = "agent.crt";
const CA: &str = "ca.crt";
const IDENTITY: &str = "agent.json";

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StateError + '_ {
    move |source| StateError::Io {
        path: path.to_owned(),
        source,
    }
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    /// Writes `contents` to `name` with mode 0600, atomically.
    pub fn write_private(&self, name: &str, contents: &[u8]) -> Result<(), StateError> {
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        std::fs::set_permissions(&self.root, std::fs::Permissions::from_mode(0o700))
            .map_err(io(&self.root))?;
        let target = self.root.join(name);
        let staged = self.root.join(format!(".{name}.tmp"));
        let _ = std::fs::remove_file(&staged);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staged)
            .map_err(io(&staged))?;
        file.write_all(contents).map_err(io(&staged))?;
        file.sync_all().map_err(io(&staged))?;
        std::fs::rename(&staged, &target).map_err(io(&target))?;
        Ok(())
    }

    pub(crate) fn read_private(&self, name: &str) -> Result<String, StateError> {
        let path = self.root.join(name);
        let meta = match std::fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(StateError::NotEnrolled(self.root.clone()));
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(StateError::Permissions(path, mode));
        }
        std::fs::read_to_string(&path).map_err(io(&path))
    }

    /// Stores a completed enrollment.
    pub fn save(&self, trust: &TrustMaterial) -> Result<(), StateError> {
        self.write_private(KEY, trust.key_pem.as_bytes())?;
        self.write_private(CERT, trust.certificate_pem.as_bytes())?;
        self.write_private(CA, trust.ca_certificate_pem.as_bytes())?;
        let identity = serde_json::to_vec_pretty(&trust.identity)
            .map_err(|e| StateError::Corrupt(self.root.join(IDENTITY), e.to_string()))?;
        self.write_private(IDENTITY, &identity)
    }

    /// Loads the trust material, or refuses: missing, loosely permitted or corrupt files are errors.
    pub fn load(&self) -> Result<TrustMaterial, StateError> {
        let identity_text = self.read_private(IDENTITY)?;
        let identity = serde_json::from_str(&identity_text)
            .map_err(|e| StateError::Corrupt(self.root.join(IDENTITY), e.to_string()))?;
        let trust = TrustMaterial {
            identity,
            key_pem: self.read_private(KEY)?,
            certificate_pem: self.read_private(CERT)?,
            ca_certificate_pem: self.read_private(CA)?,
        };
        for (name, text, marker) in [
            (KEY, &trust.key_pem, "PRIVATE KEY-----"),
            (CERT, &trust.certificate_pem, "-----BEGIN CERTIFICATE-----"),
            (CA, &trust.ca_certificate_pem, "-----BEGIN CERTIFICATE-----"),
        ] {
            if !text.contains(marker) {
                return Err(StateError::Corrupt(self.root.join(name), "not PEM".into()));
            }
        }
        Ok(trust)
    }
}
