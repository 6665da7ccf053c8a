//! The `edge-agent` command line: parses arguments and dispatches; prints tables or JSON.
//! Glue only: every decision lives in `vision`, `enrolment`, `attendance` or `store`.

mod attendance;
mod serve;
mod sync;
mod vision;

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::capture::{BURST_FRAMES, SourceSpec};
use crate::vision::{DetectOptions, Pick, Pipeline, PipelineOptions, RuntimeOptions};

#[derive(Parser, Debug)]
#[command(
    name = "edge-agent",
    version,
    about = "Rollcall classroom box: face recognition attendance, offline first"
)]
pub struct Cli {
    #[command(flatten)]
    pub vision: VisionArgs,
    /// Folder holding the box's database and edge-agent.toml.
    #[arg(
        long,
        global = true,
        env = "ROLLCALL_DATA",
        default_value = "rollcall-data"
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the teacher screen when no subcommand is given.
    #[command(flatten)]
    pub tui: TuiArgs,
}

#[derive(Args, Debug, Clone, Default)]
pub struct TuiArgs {
    /// Where frames come from: camera[:INDEX] (default: the first USB camera), images:DIR, whose
    /// image files are replayed as camera frames (demos and tests), or, when built with the
    /// feature `opencv`, rtsp://URL (an IP camera), gst:PIPELINE (a GStreamer pipeline, e.g. a
    /// Jetson's CSI camera) or video:FILE.
    #[arg(
        long,
        value_name = "camera[:INDEX]|images:DIR|rtsp://URL|gst:PIPELINE|video:FILE"
    )]
    pub source: Option<SourceSpec>,
    /// The section to open (default: the lesson under way by the timetable, else a picker).
    #[arg(long)]
    pub section: Option<String>,
}

#[derive(Args, Debug, Clone)]
pub struct VisionArgs {
    /// Inference threads per model (0: one per core).
    #[arg(long, global = true, default_value_t = 0, env = "ROLLCALL_THREADS")]
    pub threads: usize,
    /// Folder holding the model files (default: the checkout's models/, then /usr/share/rollcall/models).
    #[arg(long, global = true, env = "ROLLCALL_MODELS")]
    pub models: Option<PathBuf>,
    /// Scale frames up by this factor before detection, for rooms whose back rows are small.
    #[arg(long, global = true, default_value_t = 1.0)]
    pub detect_upscale: f32,
}

impl VisionArgs {
    /// Loads the pipeline with these options and the box's `[vision]` settings in `data_dir`.
    fn pipeline(&self, data_dir: &std::path::Path) -> Result<Pipeline> {
        let config = crate::config::Config::load(&data_dir.join(crate::config::CONFIG_FILE))?;
        Ok(Pipeline::load(&self.pipeline_options(&config.vision)?)?)
    }

    /// The options, checked; loading is left to the caller (the teacher screen loads on a worker).
    fn pipeline_options(&self, vision: &crate::config::VisionConfig) -> Result<PipelineOptions> {
        if !(0.25..=4.0).contains(&self.detect_upscale) {
            bail!(
                "--detect-upscale must be between 0.25 and 4, got {}",
                self.detect_upscale
            );
        }
        Ok(PipelineOptions {
            runtime: RuntimeOptions {
                intra_threads: self.threads,
                models_dir: self.models.clone(),
                provider: vision.provider,
            },
            detect: DetectOptions {
                upscale: self.detect_upscale,
                ..DetectOptions::default()
            },
        })
    }
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Find faces: boxes, five landmarks, quality and liveness per face.
    Detect {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// One JSON object per image and line.
        #[arg(long)]
        json: bool,
        /// Write a copy of the image with the faces drawn (with several images, one file each,
        /// named OUT-<image name>.png).
        #[arg(long, value_name = "OUT.png")]
        annotate: Option<PathBuf>,
    },
    /// Turn the one usable face of each photo into a 512-d embedding.
    Embed {
        #[arg(required = true)]
        images: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Which face to use when a photo holds several usable ones (default: refuse the photo).
        #[arg(long, value_enum)]
        pick: Option<Pick>,
    },
    /// Similarity of the faces in two photos and the verdict at the manifest thresholds.
    Compare {
        a: PathBuf,
        b: PathBuf,
        #[arg(long, value_enum)]
        pick: Option<Pick>,
    },
    /// Enrol people from one photo each (nothing stored), then say who appears in other photos.
    Identify {
        /// A person and their enrolment photo, as NAME=PHOTO (repeatable).
        #[arg(long = "enrol", value_name = "NAME=PHOTO", required = true)]
        enrol: Vec<String>,
        /// Photos to search.
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// Roster: import OneRoster 1.1 CSV bulk files.
    #[command(subcommand)]
    Roster(RosterCommand),
    /// Record a guardian's consent decision; withdrawing deletes the student's face data at once.
    Consent {
        student: String,
        decision: ConsentDecision,
        /// Who recorded it (kept in the audit log).
        #[arg(long)]
        by: String,
    },
    /// Enrol a consenting student from photos: each must pass the quality gate.
    Enroll {
        #[arg(long)]
        student: String,
        #[arg(required = true)]
        images: Vec<PathBuf>,
        /// Enrol even if the face already matches another student.
        #[arg(long)]
        force: bool,
        /// Re-enrol: delete the student's templates (on this box, and through the server on
        /// every box) and keep only these photos', in one step; nothing changes unless one passes.
        #[arg(long)]
        replace: bool,
        /// Keep the 112x112 aligned crop (needed to re-embed after a model change).
        #[arg(long)]
        keep_crop: bool,
        /// Which face to use when a photo holds several usable ones (default: refuse the photo).
        #[arg(long, value_enum)]
        pick: Option<Pick>,
    },
    /// After a new embedder (a new embedding space): make templates again from the crops kept at
    /// enrolment, and list the students who must be enrolled again.
    Reembed {
        #[arg(long)]
        json: bool,
    },
    /// Take attendance of a section from a burst of frames.
    Capture {
        #[arg(long)]
        section: String,
        /// Image files, one frame each.
        #[arg(long, num_args = 1.., required_unless_present = "source")]
        images: Vec<PathBuf>,
        /// Where frames come from: images:DIR (its image files in name order), camera[:INDEX], or
        /// with the feature `opencv` rtsp://URL, gst:PIPELINE or video:FILE.
        #[arg(
            long,
            value_name = "images:DIR|camera[:INDEX]|rtsp://URL|gst:PIPELINE|video:FILE",
            conflicts_with = "images"
        )]
        source: Option<SourceSpec>,
        /// Frames in the burst taken from --source.
        #[arg(long, default_value_t = BURST_FRAMES, requires = "source")]
        frames: usize,
        #[arg(long)]
        json: bool,
    },
    /// The teacher screen (the default with no subcommand): take attendance with one key, fix it
    /// with one key, enrol at the box.
    Tui(TuiArgs),
    /// Attendance sessions without a capture: manual roll call, and what a session holds.
    #[command(subcommand)]
    Session(SessionCommand),
    /// The timetable: which section meets when and where.
    #[command(subcommand)]
    Schedule(ScheduleCommand),
    /// A teacher's mark for one student; always beats the machine's.
    Mark {
        session: String,
        student: String,
        status: TeacherStatus,
        #[arg(long, default_value = "teacher")]
        by: String,
    },
    /// Join the school's server: trade an admin's one-time code for this box's device token.
    Provision {
        /// The server's base URL, e.g. https://rollcall.school.example
        #[arg(long)]
        server: String,
        /// The one-time provisioning code from the admin.
        #[arg(long)]
        code: String,
        /// How the admin's device list names this box (default: the name the admin gave the code).
        #[arg(long)]
        name: Option<String>,
    },
    /// Push waiting events and pull the school's changes; without --once, keep doing so.
    Sync {
        /// One cycle, then exit (status 0 when it reached the server, 1 when not).
        #[arg(long)]
        once: bool,
        /// Put events the server rejected back in the queue (after fixing the cause on the server).
        #[arg(long)]
        retry_rejected: bool,
    },
    /// The box's sync state: device, server, last push and pull, events waiting, breaker, templates.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// The ML service: detect, encode and match faces over HTTP for the server's central
    /// enrolment (`[serve]` in edge-agent.toml; an API key is required).
    Serve {
        /// Address to listen on (default: `[serve] listen`, 127.0.0.1:8700).
        #[arg(long)]
        listen: Option<String>,
    },
    /// The box as a service: the sync loop, `/health`, `/metrics`, `/status` and `POST /sync` on
    /// `[daemon] listen` (127.0.0.1:8701), systemd notification and watchdog, and the ML service
    /// when `[daemon] ml_service`. A teacher screen beside it shows its sync state.
    Daemon,
    /// Check the box: camera, ONNX Runtime, models, free disk, the store, the server with this
    /// box's token and its clock, recognition, events waiting. Exit status 1 when a check fails.
    Doctor {
        /// The camera to read a frame from (default camera:0; any --source of `capture`).
        #[arg(long)]
        source: Option<crate::capture::SourceSpec>,
        #[arg(long)]
        json: bool,
    },
    /// Print the sha256 of an API key read from standard input, for `[serve] api_key_sha256`.
    HashKey,
    /// Confirm (present) or reject (absent) a "needs review" item.
    Review {
        session: String,
        student: String,
        decision: ReviewDecision,
        #[arg(long, default_value = "teacher")]
        by: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum RosterCommand {
    /// Import a folder of OneRoster 1.1 CSV bulk files, all or nothing.
    Import { dir: PathBuf },
}

#[derive(Subcommand, Debug)]
pub enum SessionCommand {
    /// Open a session with no capture (manual roll call, or recognition switched off); prints its
    /// id for `edge-agent mark`.
    Open {
        /// The section; default: the lesson under way now by the timetable.
        #[arg(long)]
        section: Option<String>,
        /// Use this moment instead of now to find the lesson, as DAY-HH:MM (e.g. mon-08:40).
        #[arg(long, value_name = "DAY-HH:MM", conflicts_with = "section")]
        at: Option<String>,
    },
    /// Every student of a session's section with their mark (or "unmarked").
    Show {
        session: String,
        #[arg(long)]
        json: bool,
    },
    /// Close a session: the roll is done (the server records when). Closing it again changes
    /// nothing.
    Close { session: String },
}

#[derive(Subcommand, Debug)]
pub enum ScheduleCommand {
    /// Add a weekly lesson to a section's timetable.
    Add {
        #[arg(long)]
        section: String,
        /// mon, tue, ... sun (or 1-7).
        #[arg(long)]
        day: String,
        /// HH:MM, local time.
        #[arg(long)]
        start: String,
        #[arg(long)]
        end: String,
        #[arg(long)]
        room: Option<String>,
    },
    /// Remove every lesson of a section.
    Clear {
        #[arg(long)]
        section: String,
    },
    /// The timetable, of one section or all.
    List {
        #[arg(long)]
        section: Option<String>,
    },
    /// The lesson under way now (or at --at DAY-HH:MM).
    Now {
        #[arg(long, value_name = "DAY-HH:MM")]
        at: Option<String>,
    },
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ConsentDecision {
    Grant,
    Withdraw,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum TeacherStatus {
    Present,
    Absent,
    Late,
    Excused,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ReviewDecision {
    Confirm,
    Reject,
}

impl Cli {
    /// Whether this invocation opens the teacher screen (no subcommand, or `tui`).
    pub fn opens_screen(&self) -> bool {
        matches!(self.command, None | Some(Command::Tui(_)))
    }
}

/// Runs the command; the returned code is the process exit status.
pub fn run(cli: Cli) -> Result<i32> {
    let command = match cli.command {
        None => Command::Tui(cli.tui),
        Some(command) => command,
    };
    if let Command::Tui(args) = command {
        let database = attendance::existing_database(&cli.data_dir)?;
        let config = crate::config::Config::load(&cli.data_dir.join(crate::config::CONFIG_FILE))?;
        let tui = crate::tui::Tui::new();
        let updates = tui.sync_updates();
        // Sync runs beside the screen on its own thread and connection; quitting does not wait
        // for a cycle in flight (dropping the handle only asks the loop to stop).
        let sync = crate::sync::spawn(
            database.clone(),
            cli.data_dir.clone(),
            config.sync,
            move |report| {
                updates.send(crate::tui::SyncIndicator::from_report(&report));
            },
        );
        tui.run(crate::tui::TuiOptions {
            database,
            recognition: config.recognition,
            pipeline: cli.vision.pipeline_options(&config.vision)?,
            source: args.source.unwrap_or_default(),
            section: args.section,
            sync: Some(sync.nudge()),
        })?;
        drop(sync);
        return Ok(0);
    }
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    match command {
        Command::Detect {
            images,
            json,
            annotate,
        } => vision::detect(
            &mut cli.vision.pipeline(&cli.data_dir)?,
            &images,
            json,
            annotate.as_deref(),
            &mut out,
        ),
        Command::Embed { images, json, pick } => vision::embed(
            &mut cli.vision.pipeline(&cli.data_dir)?,
            &images,
            json,
            pick,
            &mut out,
        ),
        Command::Compare { a, b, pick } => vision::compare(
            &mut cli.vision.pipeline(&cli.data_dir)?,
            &a,
            &b,
            pick,
            &mut out,
        ),
        Command::Identify { enrol, photos } => vision::identify(
            &mut cli.vision.pipeline(&cli.data_dir)?,
            &enrol,
            &photos,
            &mut out,
        ),
        Command::Serve { listen } => serve::run(&cli.vision, &cli.data_dir, listen),
        Command::HashKey => serve::hash_key(&mut out),
        Command::Daemon => serve::daemon(&cli.vision, &cli.data_dir),
        Command::Doctor { source, json } => {
            use std::io::Write as _;
            let config =
                crate::config::Config::load(&cli.data_dir.join(crate::config::CONFIG_FILE))?;
            let options = cli.vision.pipeline_options(&config.vision)?;
            let checks = crate::doctor::examine(&crate::doctor::Patient {
                data_dir: &cli.data_dir,
                config: &config,
                runtime: &options.runtime,
                source: &source.unwrap_or_default(),
            });
            if json {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "ok": crate::doctor::exit_status(&checks) == 0,
                        "checks": checks,
                    })
                )?;
            } else {
                write!(out, "{}", crate::doctor::render(&checks))?;
            }
            Ok(crate::doctor::exit_status(&checks))
        }
        command @ (Command::Provision { .. } | Command::Sync { .. } | Command::Status { .. }) => {
            sync::run(command, &cli.data_dir, &mut out)
        }
        command => attendance::run(command, &cli.vision, &cli.data_dir, &mut out),
    }
}
