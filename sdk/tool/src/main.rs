//! `infrapilot-plugin`: the plugin author's tool.
//!
//! - `componentize <module.wasm> <component.wasm>`: wraps a `wasm32-unknown-unknown` core module
//!   built with wit-bindgen into a WebAssembly component (the WIT is embedded by wit-bindgen).
//! - `keygen --out key.pem`: a new Ed25519 signing key (mode 0600) and its public key (`key.pub`),
//!   which operators add to their trusted publisher keys.
//! - `pack --manifest manifest.json --component plugin.wasm [--key key.pem] --out plugin.ipb`:
//!   checks the manifest and writes a bundle, signed when a key is given.
//! - `verify <bundle> [--trust key.pub]`: checks a bundle the way the host does.

use std::path::PathBuf;

mod browser_imports;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use infrapilot_plugin_types::bundle::{Bundle, PublicKey, SigningKey, TrustedKeys};
use infrapilot_plugin_types::manifest::Manifest;

#[derive(Parser)]
#[command(name = "infrapilot-plugin", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Turns a core module (wasm32-unknown-unknown, wit-bindgen) into a component.
    Componentize { module: PathBuf, output: PathBuf },
    /// Makes an Ed25519 signing key (PKCS#8 PEM, mode 0600) and writes its public key next to it.
    Keygen {
        #[arg(long)]
        out: PathBuf,
    },
    /// Packs manifest and component into a bundle, signed with --key.
    Pack {
        #[arg(long)]
        manifest: PathBuf,
        #[arg(long)]
        component: PathBuf,
        #[arg(long)]
        key: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Verifies a bundle against trusted public keys (as the host does).
    Verify {
        bundle: PathBuf,
        /// Trusted public key files (repeatable).
        #[arg(long)]
        trust: Vec<PathBuf>,
    },
}

fn read(path: &std::path::Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Componentize { module, output } => {
            let core =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
            let (core, stubbed) = browser_imports::stub_browser_imports(&core)
                .with_context(|| format!("{} is not a valid module", module.display()))?;
            if stubbed > 0 {
                println!(
                    "{}: {stubbed} browser (wasm-bindgen) imports trap if called",
                    module.display()
                );
            }
            let component = wit_component::ComponentEncoder::default()
                .validate(true)
                .module(&core)
                .with_context(|| format!("{} is not a wit-bindgen module", module.display()))?
                .encode()
                .context("encoding the component")?;
            std::fs::write(&output, &component)
                .with_context(|| format!("writing {}", output.display()))?;
            println!(
                "{} ({} bytes) -> {} ({} bytes)",
                module.display(),
                core.len(),
                output.display(),
                component.len()
            );
            Ok(())
        }
        Command::Keygen { out } => {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let key = SigningKey::generate()?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&out)
                .with_context(|| format!("creating {} (it must not exist)", out.display()))?;
            file.write_all(key.to_pem()?.as_bytes())?;
            let public = out.with_extension("pub");
            std::fs::write(&public, key.public_key_pem()?)?;
            println!(
                "signing key {} (keep it secret), public key {} (id {})",
                out.display(),
                public.display(),
                key.public_key().id()
            );
            Ok(())
        }
        Command::Pack {
            manifest,
            component,
            key,
            out,
        } => {
            let manifest_bytes = read(&manifest)?;
            let parsed = Manifest::parse(&manifest_bytes)?;
            let component_bytes = read(&component)?;
            if !component_bytes.starts_with(b"\0asm") {
                bail!("{} is not WebAssembly", component.display());
            }
            let key = match key {
                Some(path) => Some(SigningKey::from_pem(&String::from_utf8_lossy(&read(
                    &path,
                )?))?),
                None => None,
            };
            let bundle = Bundle::new(manifest_bytes, component_bytes, key.as_ref());
            std::fs::write(&out, bundle.to_tar())
                .with_context(|| format!("writing {}", out.display()))?;
            println!(
                "{} {} ({}) -> {}{}",
                parsed.id,
                parsed.version,
                parsed.world.as_str(),
                out.display(),
                match &key {
                    Some(k) => format!(", signed by {}", k.public_key().id()),
                    None => ", unsigned".into(),
                }
            );
            Ok(())
        }
        Command::Verify { bundle, trust } => {
            let mut trusted = TrustedKeys::default();
            for path in trust {
                trusted.push(PublicKey::from_pem(&String::from_utf8_lossy(&read(
                    &path,
                )?))?);
            }
            let verified = Bundle::from_tar(&read(&bundle)?)?.verify(&trusted, false)?;
            println!(
                "{} {}: signed by {}, component sha256 {}",
                verified.manifest.id,
                verified.manifest.version,
                verified.signed_by.as_deref().unwrap_or("nobody"),
                verified.component_sha256
            );
            Ok(())
        }
    }
}
