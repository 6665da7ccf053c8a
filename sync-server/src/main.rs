use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "sync-server", version, about = "Rollcall central sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Check a configuration file and say which store it selects.
    CheckConfig {
        #[arg(long, default_value = "sync-server.toml")]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::CheckConfig { config } => {
            let config = sync_server::Config::load(&config)?;
            println!(
                "ok: listen {}, store {}",
                config.listen,
                config.store_description()
            );
        }
    }
    Ok(())
}
