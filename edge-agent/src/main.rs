use clap::Parser;
use tracing_subscriber::EnvFilter;

/// Where the teacher screen's log goes: it owns the terminal, so nothing may print there.
const SCREEN_LOG_FILE: &str = "edge-agent.log";

fn main() {
    let cli = edge_agent::cli::Cli::parse();
    let filter =
        || EnvFilter::try_from_env("ROLLCALL_LOG").unwrap_or_else(|_| EnvFilter::new("warn"));
    let screen_log = cli.opens_screen().then(|| {
        std::fs::create_dir_all(&cli.data_dir).ok()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(cli.data_dir.join(SCREEN_LOG_FILE))
            .ok()
    });
    match screen_log {
        Some(Some(file)) => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .init(),
        // The screen without a writable data folder: no log rather than a garbled screen.
        Some(None) => {}
        None => tracing_subscriber::fmt()
            .with_env_filter(filter())
            .with_writer(std::io::stderr)
            .init(),
    }
    match edge_agent::cli::run(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}
