//! `mailtap config check`: validate a configuration and print every
//! effective key.

use crate::config::Config;
use anyhow::{Context, Result};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// Validate a configuration file (and --set overrides) and print the
    /// effective configuration, every key with its value, as TOML.
    Check(ConfigCheckArgs),
}

#[derive(clap::Args)]
pub struct ConfigCheckArgs {
    /// The TOML file; omit it to see the defaults.
    pub file: Option<PathBuf>,
    /// Override one key, as for read and live.
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

pub fn check(a: ConfigCheckArgs) -> Result<i32> {
    let cfg = Config::load(a.file.as_deref(), &a.sets)?;
    let text = toml::to_string_pretty(&cfg).context("printing the configuration")?;
    print!("{text}");
    if !text.ends_with('\n') {
        println!();
    }
    for (section, feature) in cfg.unchecked_sections() {
        eprintln!(
            "mailtap: note: [{section}] is kept as written but not checked: this mailtap was built without the `{feature}` feature"
        );
    }
    eprintln!(
        "mailtap: configuration {}ok",
        a.file
            .as_ref()
            .map(|f| format!("{} ", f.display()))
            .unwrap_or_default()
    );
    Ok(0)
}
