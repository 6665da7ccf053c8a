//! `sync-server`: serve the API, make the first admin, check a configuration.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
mod enrol_photos;

use sync_server::Config;
use sync_server::api::{self, AppState, Limits, Transport};
use sync_server::ml_client::Enroller;
use sync_server::notify::Notifier;
use sync_server::store::mongo::MongoStore;
use sync_server::store::sqlite::SqliteStore;
use sync_server::store::{Role, Store, StoreError, User};

#[derive(Parser, Debug)]
#[command(name = "sync-server", version, about = "Rollcall central sync server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve the sync and admin API until SIGTERM or Ctrl-C.
    Serve {
        /// TOML configuration; without it the defaults, in both cases with the ROLLCALL_*
        /// environment overrides.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Manage accounts directly in the store (for the first admin).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Fill the configured store with a plausible demo school: sections with a timetable, a box
    /// each, and school days of rolls (absences with weekday patterns, chronic absentees, late
    /// arrivals, teacher corrections), through the boxes' own push path.
    DemoData {
        /// The new school's id.
        #[arg(long, default_value = "demo")]
        school: String,
        #[arg(long, default_value_t = 1000)]
        students: usize,
        /// School days (Monday to Friday) of rolls, ending today.
        #[arg(long, default_value_t = 180)]
        days: usize,
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Enrol a school's photos from a ZIP (photos named by student id: S123.jpg, S123_2.jpg or
    /// S123/any.jpg) through a running server with `[ml]`, with a progress bar; prints every
    /// refusal by file name and reason.
    EnrolPhotos {
        /// The ZIP file.
        zip: PathBuf,
        /// The server's address, e.g. https://rollcall.example.org.
        #[arg(long, default_value = "http://127.0.0.1:8440")]
        server: String,
        #[arg(long)]
        school: String,
        /// An admin of the school (or a district admin).
        #[arg(long)]
        username: String,
        /// Read the password from standard input without a prompt (for scripts).
        #[arg(long)]
        password_stdin: bool,
        /// Enrol even faces that already match another student.
        #[arg(long)]
        force: bool,
    },
    /// Check a configuration file and say which store it selects.
    CheckConfig {
        #[arg(long, default_value = "sync-server.toml")]
        config: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum AdminCommand {
    /// Create an admin account: a district admin, or with --school the admin of one school.
    Create {
        #[arg(long)]
        username: String,
        /// The school this admin manages; without it the admin manages every school.
        #[arg(long)]
        school: Option<String>,
        /// Read the password from standard input without a prompt (for scripts).
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Serve { config } => serve(config.as_deref()).await,
        Command::Admin {
            command:
                AdminCommand::Create {
                    username,
                    school,
                    password_stdin,
                    config,
                },
        } => create_admin(config.as_deref(), &username, school, password_stdin).await,
        Command::DemoData {
            school,
            students,
            days,
            config,
        } => demo_data(config.as_deref(), school, students, days).await,
        Command::EnrolPhotos {
            zip,
            server,
            school,
            username,
            password_stdin,
            force,
        } => {
            let password = read_password(&username, password_stdin)?;
            enrol_photos::run(&zip, &server, &school, &username, &password, force).await
        }
        Command::CheckConfig { config } => {
            let config = Config::load_with_env(Some(&config))?;
            let scheme = match &config.tls {
                Some(tls) => {
                    Transport::https(Duration::from_secs(1), &tls.cert_file, &tls.key_file)?;
                    "https"
                }
                None => "http",
            };
            println!(
                "ok: listen {} ({scheme}), store {}",
                config.listen,
                config.store_description()
            );
            Ok(())
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Logs go to stderr (journald takes both); colours only for a person at a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

/// The store the configuration selects: MongoDB when `mongodb_uri` is set, else the embedded
/// SQLite file in the data directory.
async fn open_store(config: &Config) -> Result<Arc<dyn Store>> {
    if let Some(uri) = &config.mongodb_uri {
        return Ok(Arc::new(open_mongo(config, uri).await?));
    }
    std::fs::create_dir_all(&config.data_dir).with_context(|| {
        format!(
            "cannot create the data directory {}",
            config.data_dir.display()
        )
    })?;
    let path = config.sqlite_path();
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(&path))
        .await
        .context("opening the embedded store panicked")?
        .with_context(|| format!("cannot open {}", config.sqlite_path().display()))?;
    Ok(Arc::new(store))
}

async fn open_mongo(config: &Config, uri: &str) -> Result<MongoStore> {
    MongoStore::connect(uri, &config.mongodb_database)
        .await
        .with_context(|| format!("cannot open {}", config.store_description()))
}

/// `open_store` for the process that serves the database. On MongoDB it first ends what an
/// earlier server process left open: only `serve` does, since `admin create` may run beside a
/// live server, whose transactions it must leave alone.
async fn open_store_to_serve(config: &Config) -> Result<Arc<dyn Store>> {
    let Some(uri) = &config.mongodb_uri else {
        return open_store(config).await;
    };
    let store = open_mongo(config, uri).await?;
    match store.end_earlier_sessions().await {
        Ok(0) => {}
        Ok(n_sessions) => {
            tracing::info!(
                n_sessions,
                "ended the database sessions of an earlier server process"
            );
        }
        // Serving anyway is right: the database reaps those transactions itself, so at worst a
        // push that was in flight when the earlier process died is refused for up to a minute.
        Err(e) => tracing::warn!(
            error = %e,
            "could not end the database sessions of an earlier server process"
        ),
    }
    Ok(Arc::new(store))
}

async fn serve(config_path: Option<&Path>) -> Result<()> {
    init_logging();
    let config = Config::load_with_env(config_path)?;
    let limits = Limits::from(&config);
    let header_timeout = limits.header_timeout();
    // Certificates are read before the store opens: a typo in a path fails at once.
    let transport = match &config.tls {
        Some(tls) => Transport::https(header_timeout, &tls.cert_file, &tls.key_file)?,
        None => Transport::plain(header_timeout),
    };
    let scheme = if transport.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let store = open_store_to_serve(&config).await?;
    let served = serve_store(store.clone(), &config, limits, transport, scheme).await;
    store.close().await;
    served
}

async fn serve_store(
    store: Arc<dyn Store>,
    config: &Config,
    limits: Limits,
    transport: Transport,
    scheme: &str,
) -> Result<()> {
    let header_timeout = limits.header_timeout();
    let watched = store.clone();
    let listener = tokio::net::TcpListener::bind(&config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let state = AppState::new(store.clone(), limits);
    let enroller = match &config.ml {
        Some(ml) => {
            let jobs = config.enrol_jobs_dir();
            let enroller = Enroller::open(store.clone(), ml, &jobs, Arc::new(api::SystemClock))
                .with_context(|| {
                    format!(
                        "cannot start central enrolment (jobs in {})",
                        jobs.display()
                    )
                })?;
            let enroller = Arc::new(enroller);
            state.set_enroller(enroller.clone());
            tracing::info!(ml = %ml.url, jobs = %jobs.display(), "central enrolment through the ML service");
            Some(enroller)
        }
        None => {
            tracing::info!("no [ml] in the configuration: students are enrolled at a box only");
            None
        }
    };
    // Both listeners stop on the one signal.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|&stop| stop).await;
        }
    };
    let metrics = match &config.metrics_listen {
        Some(address) => {
            let metrics_listener = tokio::net::TcpListener::bind(address)
                .await
                .with_context(|| format!("cannot listen for /metrics on {address}"))?;
            tracing::info!(metrics_listen = %address, "serving /metrics on its own address");
            Some(tokio::spawn(api::serve_router(
                metrics_listener,
                api::metrics_router(state.clone()),
                Transport::plain(header_timeout),
                until_stopped(),
            )))
        }
        None => None,
    };
    tracing::info!(
        listen = %config.listen,
        scheme,
        store = %config.store_description(),
        "serving"
    );
    let notifier = match &config.smtp {
        Some(smtp) => {
            let notifier = Notifier::new(store, Arc::new(api::SystemClock), smtp)
                .context("cannot start sending notices")?;
            tracing::info!(smtp = %smtp.host, port = smtp.port, "sending notices");
            Some(tokio::spawn(Arc::new(notifier).run(until_stopped())))
        }
        None => {
            tracing::info!("no [smtp] in the configuration: no notices are sent");
            None
        }
    };
    let enrolling = enroller.map(|enroller| tokio::spawn(enroller.run(until_stopped())));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        let _ = stop.send(true);
    });
    // Under systemd (`Type=notify`): ready once listening, and alive while the store answers.
    let _ = sd_notify::notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("serving on {}", config.listen)),
    ]);
    let watchdog = tokio::spawn(watchdog(watched));
    api::serve_router(listener, api::router(state), transport, until_stopped())
        .await
        .context("server failed")?;
    if let Some(notifier) = notifier {
        notifier.await.context("the notice sender panicked")?;
    }
    if let Some(enrolling) = enrolling {
        enrolling.await.context("central enrolment panicked")?;
    }
    if let Some(metrics) = metrics {
        metrics
            .await
            .context("the /metrics listener panicked")?
            .context("the /metrics listener failed")?;
    }
    watchdog.abort();
    tracing::info!("stopped");
    Ok(())
}

/// Pings systemd's watchdog (`WatchdogSec`) at half its period while the store answers a ping
/// within that half: a server whose database is gone for good is restarted, one that answers is
/// left alone however busy.
async fn watchdog(store: Arc<dyn sync_server::store::Store>) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let mut every = tokio::time::interval(period / 2);
    loop {
        every.tick().await;
        match tokio::time::timeout(period / 2, store.ping()).await {
            Ok(Ok(())) => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the store does not answer: no watchdog ping")
            }
            Err(_) => tracing::error!("the store did not answer in time: no watchdog ping"),
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM (systemd's stop), so requests in flight finish first.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down: finishing requests in flight");
}

fn read_password(username: &str, password_stdin: bool) -> Result<String> {
    let mut text = String::new();
    if password_stdin {
        std::io::stdin()
            .read_to_string(&mut text)
            .context("cannot read the password from standard input")?;
    } else if std::io::stdin().is_terminal() {
        // At a terminal the password is typed unseen (echo off on the terminal itself), so it
        // never stands on the screen or in a scrollback.
        text = rpassword::prompt_password(format!("Password for {username}: "))
            .context("cannot read the password from the terminal")?;
    } else {
        std::io::stdin()
            .lock()
            .read_line(&mut text)
            .context("cannot read the password from standard input")?;
    }
    // Only the line ending goes: spaces inside or around a password are part of it.
    Ok(text.trim_end_matches(['\n', '\r']).to_owned())
}

async fn demo_data(
    config_path: Option<&Path>,
    school: String,
    students: usize,
    days: usize,
) -> Result<()> {
    if !(1..=20_000).contains(&students) || !(1..=400).contains(&days) {
        bail!("--students must be 1-20000 and --days 1-400");
    }
    let config = Config::load_with_env(config_path)?;
    let store = open_store(&config).await?;
    let filled = fill_demo(&*store, &config, school, students, days).await;
    store.close().await;
    filled
}

async fn fill_demo(
    store: &dyn Store,
    config: &Config,
    school: String,
    students: usize,
    days: usize,
) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .context("the clock is before 1970")?
        .as_millis() as i64;
    let spec = sync_server::demo::DemoSpec {
        school_id: school.clone(),
        students,
        days,
    };
    eprintln!(
        "demo-data: school {school}, {students} students, {days} school days, into {}",
        config.store_description()
    );
    let started = std::time::Instant::now();
    let summary = match sync_server::demo::fill(store, &spec, now, |done, all| {
        if done % 20 == 0 || done == all {
            eprintln!("demo-data: {done}/{all} days");
        }
    })
    .await
    {
        Ok(summary) => summary,
        Err(StoreError::Conflict(_)) => {
            bail!("school {school} exists already: pick another --school or a new data directory")
        }
        Err(e) => return Err(e).context("cannot fill the demo school"),
    };
    println!(
        "demo school {school}: {} sections, {} rolls, {} marks in {:.1} s. Sign in as an admin of it: sync-server admin create --username {school}-admin --school {school}",
        summary.sections,
        summary.sessions,
        summary.marks,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn create_admin(
    config_path: Option<&Path>,
    username: &str,
    school: Option<String>,
    password_stdin: bool,
) -> Result<()> {
    let password = read_password(username, password_stdin)?;
    if password.chars().count() < api::MIN_PASSWORD_CHARS {
        bail!(
            "the password is shorter than {} characters; choose a longer one",
            api::MIN_PASSWORD_CHARS
        );
    }
    let config = Config::load_with_env(config_path)?;
    let store = open_store(&config).await?;
    let created = create_admin_in(&*store, username, school, password).await;
    store.close().await;
    created
}

async fn create_admin_in(
    store: &dyn Store,
    username: &str,
    school: Option<String>,
    password: String,
) -> Result<()> {
    if let Some(school_id) = &school
        && store.school(school_id).await?.is_none()
    {
        bail!(
            "no school {school_id}: create it first (POST /v1/schools as a district admin), or leave out --school to make a district admin"
        );
    }
    let password_hash = tokio::task::spawn_blocking(move || api::hash_password(&password))
        .await
        .context("password hashing panicked")??;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        username: username.to_owned(),
        password_hash,
        role: Role::Admin,
        school_id: school.clone(),
        teacher_id: None,
    };
    match store.create_user(&user).await {
        Ok(()) => {}
        Err(StoreError::Conflict(_)) => bail!("username {username} is already taken"),
        Err(e) => return Err(e).context("cannot create the admin"),
    }
    match school {
        Some(school_id) => println!("created admin {username} of school {school_id}"),
        None => println!("created district admin {username} (every school)"),
    }
    Ok(())
}
