//! `infrapilot license issue|verify|show|keygen`: offline licence tools.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::Subcommand;
use infrapilot_licensing::License;
use infrapilot_plugin_types::bundle::{PublicKey, SigningKey};

/// The vendor's licence-verification key (its private half is never in the repository).
const VENDOR_PUBLIC_KEY: &str = include_str!("../../../licenses/infrapilot-license.pub");

#[derive(Subcommand)]
pub enum LicenseCommand {
    /// Sign a licence with a private key file (PKCS#8 PEM) and print it.
    Issue {
        /// The issuer's private key.
        #[arg(long)]
        key: PathBuf,
        #[arg(long)]
        licensee: String,
        /// Comma-separated feature names, e.g. sso,audit-export.
        #[arg(long, value_delimiter = ',')]
        features: Vec<String>,
        /// Expiry: RFC 3339 time or YYYY-MM-DD (midnight UTC).
        #[arg(long)]
        expires: String,
        /// Limits such as nodes=50 (repeatable).
        #[arg(long = "limit")]
        limits: Vec<String>,
        /// Write the licence here instead of standard output.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check a licence file: signature, fields and expiry. Exit status 1 when it is not valid.
    Verify {
        file: PathBuf,
        /// Verify with this public key instead of the vendor key (INFRAPILOT_LICENSE_PUBLIC_KEY).
        #[arg(long, env = "INFRAPILOT_LICENSE_PUBLIC_KEY")]
        public_key: Option<PathBuf>,
    },
    /// Show the licence installed in the data directory (license.lic) and its status.
    Show {
        #[arg(long, env = "INFRAPILOT_LICENSE_PUBLIC_KEY")]
        public_key: Option<PathBuf>,
    },
    /// Make a new Ed25519 key pair for issuing licences or signing plugins.
    Keygen {
        /// The private key file to create (mode 0600); the public key goes next to it as .pub.
        #[arg(long)]
        out: PathBuf,
    },
}

/// The verification key: the operator's override, else the vendor key built into the binary.
pub fn public_key(path: Option<&Path>) -> anyhow::Result<PublicKey> {
    match path {
        Some(p) => {
            let pem =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            PublicKey::from_pem(&pem).with_context(|| p.display().to_string())
        }
        None => PublicKey::from_pem(VENDOR_PUBLIC_KEY).context("the built-in vendor key"),
    }
}

fn expiry(text: &str) -> anyhow::Result<String> {
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if time::OffsetDateTime::parse(text, rfc3339).is_ok() {
        return Ok(text.to_owned());
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .with_context(|| format!("--expires {text:?}: use YYYY-MM-DD or an RFC 3339 time"))?;
    Ok(date.midnight().assume_utc().format(rfc3339)?)
}

fn describe(license: &License) -> String {
    let now = time::OffsetDateTime::now_utc();
    let status = if license.is_expired(now) {
        "EXPIRED"
    } else {
        "valid"
    };
    let limits: Vec<String> = license
        .limits
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "status:    {status}\nlicensee:  {}\nedition:   {}\nfeatures:  {}\nlimits:    {}\nissued:    {}\nexpires:   {}\nid:        {}",
        license.licensee,
        license.edition,
        license.features.join(", "),
        if limits.is_empty() {
            "none".into()
        } else {
            limits.join(", ")
        },
        license.issued_at,
        license.expires_at,
        license.id
    )
}

fn verify_file(file: &Path, key: &PublicKey) -> anyhow::Result<License> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(License::verify(&text, key)?)
}

pub fn run(command: LicenseCommand, data_dir: &Path) -> anyhow::Result<()> {
    match command {
        LicenseCommand::Issue {
            key,
            licensee,
            features,
            expires,
            limits,
            out,
        } => {
            let pem = std::fs::read_to_string(&key)
                .with_context(|| format!("reading {}", key.display()))?;
            let signing = SigningKey::from_pem(&pem).with_context(|| key.display().to_string())?;
            let mut parsed = std::collections::BTreeMap::new();
            for limit in limits {
                let (name, value) = limit
                    .split_once('=')
                    .with_context(|| format!("--limit {limit:?}: use name=number"))?;
                let value: u64 = value
                    .parse()
                    .with_context(|| format!("--limit {limit:?}: {value:?} is not a number"))?;
                parsed.insert(name.to_owned(), value);
            }
            let now = time::OffsetDateTime::now_utc()
                .replace_nanosecond(0)?
                .format(&time::format_description::well_known::Rfc3339)?;
            let license = License {
                id: uuid::Uuid::new_v4().to_string(),
                licensee,
                edition: "enterprise".into(),
                features: features.into_iter().filter(|f| !f.is_empty()).collect(),
                limits: parsed,
                issued_at: now,
                expires_at: expiry(&expires)?,
            };
            let text = license.issue(&signing)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &text)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!(
                        "licence for {} written to {}",
                        license.licensee,
                        path.display()
                    );
                }
                None => print!("{text}"),
            }
            Ok(())
        }
        LicenseCommand::Verify {
            file,
            public_key: key,
        } => {
            let license = verify_file(&file, &public_key(key.as_deref())?)?;
            println!("{}", describe(&license));
            if license.is_expired(time::OffsetDateTime::now_utc()) {
                bail!("the licence expired at {}", license.expires_at);
            }
            Ok(())
        }
        LicenseCommand::Show { public_key: key } => {
            let file = data_dir.join("license.lic");
            if !file.exists() {
                println!(
                    "no licence installed ({} does not exist): community features only",
                    file.display()
                );
                return Ok(());
            }
            let license = verify_file(&file, &public_key(key.as_deref())?)?;
            println!("{}", describe(&license));
            Ok(())
        }
        LicenseCommand::Keygen { out } => {
            if out.exists() {
                bail!("{} exists; refusing to overwrite a key", out.display());
            }
            let key = SigningKey::generate()?;
            crate::write_private_file(&out, key.to_pem()?.as_bytes())?;
            let public = out.with_extension("pub");
            std::fs::write(&public, key.public_key_pem()?)
                .with_context(|| format!("writing {}", public.display()))?;
            println!(
                "private key {} (mode 0600), public key {}",
                out.display(),
                public.display()
            );
            Ok(())
        }
    }
}
