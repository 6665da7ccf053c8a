//! `edge-agent serve`, `edge-agent daemon` and `edge-agent hash-key`: glue between the
//! configuration, the pipelines, the ML service (`api`) and the daemon (`daemon`).

use std::io::{Read, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use shared_proto::ml::service::{ModelFileStatus, StatusResponse};

use super::VisionArgs;
use crate::api::{ServeOptions, hash_key as hash};
use crate::capture::ImageLimits;
use crate::config::{CONFIG_FILE, Config};
use crate::vision::{Pipeline, runtime};

pub(super) fn run(vision: &VisionArgs, data_dir: &Path, listen: Option<String>) -> Result<i32> {
    let config = Config::load(&data_dir.join(CONFIG_FILE))?;
    let (serve, pipelines) = prepare(vision, data_dir, &config, listen)?;
    // Two async threads are plenty: they only parse and answer; inference has its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("serve")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(crate::api::serve(serve, pipelines))?;
    Ok(0)
}

/// `edge-agent daemon`: the box as a service, with the ML service when `[daemon] ml_service`.
pub(super) fn daemon(vision: &VisionArgs, data_dir: &Path) -> Result<i32> {
    let config = Config::load(&data_dir.join(CONFIG_FILE))?;
    let ml = match config.daemon.ml_service {
        true => Some(prepare(vision, data_dir, &config, None)?),
        false => None,
    };
    crate::daemon::run(data_dir, config, ml)?;
    Ok(0)
}

/// The ML service's options and its pipelines, loaded and checked.
fn prepare(
    vision: &VisionArgs,
    data_dir: &Path,
    config: &Config,
    listen: Option<String>,
) -> Result<crate::daemon::MlService> {
    let Some(key) = config.serve.api_key_sha256.clone() else {
        bail!(
            "{}: [serve] api_key_sha256 is not set, and the service never runs without a key. Choose a key, run `echo KEY | edge-agent hash-key`, and put the result there",
            data_dir.join(CONFIG_FILE).display()
        );
    };
    let mut options = vision.pipeline_options(&config.vision)?;
    let n = config.serve.pipelines();
    // The cores are shared out between the pipelines unless --threads says otherwise.
    if options.runtime.intra_threads == 0 {
        let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
        options.runtime.intra_threads = (cores / n).max(1);
    }
    let pipelines = (0..n)
        .map(|_| Pipeline::load(&options))
        .collect::<Result<Vec<_>, _>>()?;
    let first = &pipelines[0];
    let embedder = &first.manifest().embedder;
    let status = StatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        model: first.model_id().clone(),
        space: first.space().clone(),
        dimensions: embedder.dimensions,
        confident: embedder.confident,
        review: embedder.review,
        provider: runtime::resolve(options.runtime.provider)?.to_string(),
        provider_asked: options.runtime.provider.to_string(),
        runtime: runtime::describe()?,
        models: first
            .manifest()
            .files()
            .iter()
            .map(|f| ModelFileStatus {
                name: f.name.to_owned(),
                file: f.file.to_owned(),
                sha256: f.sha256.to_owned(),
            })
            .collect(),
        pipelines: n,
        queue_capacity: config.serve.queue,
    };
    let serve = ServeOptions {
        listen: listen.unwrap_or_else(|| config.serve.listen.clone()),
        api_key_sha256: key,
        queue: config.serve.queue,
        max_body_bytes: config.serve.max_body_bytes,
        kept_galleries: config.serve.kept_galleries,
        image_limits: ImageLimits::default(),
        status,
    };
    Ok((serve, pipelines))
}

pub(super) fn hash_key(out: &mut impl Write) -> Result<i32> {
    let mut key = String::new();
    std::io::stdin()
        .read_to_string(&mut key)
        .context("cannot read the key from standard input")?;
    if key.trim().len() < 16 {
        bail!("the key must be at least 16 characters (a long random one is best)");
    }
    writeln!(out, "{}", hash(&key))?;
    Ok(0)
}
