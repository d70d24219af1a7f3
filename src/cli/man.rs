//! `mailtap man DIR` (hidden): man pages generated from the clap
//! definitions with clap_mangen, so they cannot drift from `--help`:
//! mailtap.1 and one page per subcommand (mailtap-read.1, mailtap-live.1,
//! mailtap-config-check.1, ...). scripts/build-deb.sh gzips them into the
//! Debian package.

use anyhow::{Context, Result};
use clap::CommandFactory;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
pub struct ManArgs {
    /// Directory to write the section-1 pages into (created if missing).
    pub dir: PathBuf,
}

pub fn cmd_man(a: ManArgs) -> Result<i32> {
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let mut cmd = crate::Cli::command();
    cmd.build();
    let mut written = Vec::new();
    write_pages(cmd, &a.dir, &mut written)?;
    for p in &written {
        println!("{}", p.display());
    }
    Ok(0)
}

/// One page for `cmd`, then one for each visible subcommand, depth first.
/// After `build()` clap names subcommands `mailtap-config-check` (their
/// display name), which clap_mangen uses as the page title.
fn write_pages(cmd: clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    let subs: Vec<clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .cloned()
        .collect();
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd)
        .manual("mailtap manual")
        .source(format!("mailtap {}", env!("CARGO_PKG_VERSION")))
        .render(&mut page)
        .with_context(|| format!("rendering {name}.1"))?;
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, page).with_context(|| format!("writing {}", path.display()))?;
    written.push(path);
    for sub in subs {
        write_pages(sub, dir, written)?;
    }
    Ok(())
}
