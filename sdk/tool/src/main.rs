//! `infrapilot-plugin`: the plugin author's tool.
//!
//! - `componentize <module.wasm> <component.wasm>`: wraps a `wasm32-unknown-unknown` core module
//!   built with wit-bindgen into a WebAssembly component (the WIT is embedded by wit-bindgen).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

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
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Componentize { module, output } => {
            let core =
                std::fs::read(&module).with_context(|| format!("reading {}", module.display()))?;
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
    }
}
