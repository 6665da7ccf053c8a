//! `sync-server enrol-photos FILE.zip`: the binary's client of central enrolment. It signs in to a
//! running server, uploads the ZIP (`POST /v1/schools/{s}/photos`), follows the job with a progress
//! bar, and prints the refusals by file name and reason. The server does the work: this process
//! only watches, so it may be stopped and the job goes on.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use serde_json::json;
use sync_server::api::{EnrolmentJson, JobJson, PhotoJson};
use sync_server::ml_client::PhotoState;

#[derive(Deserialize)]
struct Login {
    token: String,
}

pub async fn run(
    zip: &Path,
    server: &str,
    school: &str,
    username: &str,
    password: &str,
    force: bool,
) -> Result<()> {
    let bytes = std::fs::read(zip).with_context(|| format!("cannot read {}", zip.display()))?;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()?;
    let base = server.trim_end_matches('/');
    let answer = http
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({ "username": username, "password": password }))
        .send()
        .await
        .with_context(|| format!("cannot reach {base}"))?;
    let login: Login = read(answer).await.context("cannot sign in")?;
    let name = zip.file_name().map_or_else(
        || "photos.zip".to_owned(),
        |n| n.to_string_lossy().into_owned(),
    );
    let query = serde_urlencoded::to_string([
        ("name", name.as_str()),
        ("force", if force { "true" } else { "false" }),
    ])?;
    let answer = http
        .post(format!("{base}/v1/schools/{school}/photos?{query}"))
        .bearer_auth(&login.token)
        .header(reqwest::header::CONTENT_TYPE, "application/zip")
        .body(bytes)
        .send()
        .await
        .with_context(|| format!("cannot upload {}", zip.display()))?;
    let mut job: JobJson = read(answer).await.context("the upload was refused")?;
    let terminal = std::io::stderr().is_terminal();
    let mut shown = usize::MAX;
    let mut said_waiting = false;
    loop {
        let done = job.photos - job.waiting;
        if terminal {
            eprint!("\r{}", bar(&job));
            std::io::stderr().flush().ok();
        } else if done * 10 / job.photos.max(1) != shown {
            shown = done * 10 / job.photos.max(1);
            eprintln!("{}", bar(&job));
        }
        if job.waiting == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        let answer = http
            .get(format!(
                "{base}/v1/schools/{school}/enrolment-jobs/{}",
                job.id
            ))
            .bearer_auth(&login.token)
            .send()
            .await?;
        job = read(answer).await?;
        if !said_waiting && job.photos - job.waiting == done {
            let answer = http
                .get(format!("{base}/v1/schools/{school}/enrolment"))
                .bearer_auth(&login.token)
                .send()
                .await?;
            let overview: EnrolmentJson = read(answer).await?;
            if overview.service.breaker != "closed" {
                said_waiting = true;
                eprintln!(
                    "\nthe ML service is not answering (breaker {}{}); the photos wait on the server and the job goes on without this command{}",
                    overview.service.breaker,
                    overview
                        .service
                        .retry_in_s
                        .map_or_else(String::new, |s| format!(", next try in {s} s")),
                    overview
                        .service
                        .last_error
                        .map_or_else(String::new, |e| format!(": {e}")),
                );
            }
        }
    }
    if terminal {
        eprintln!();
    }
    let mut lines: Vec<&PhotoJson> = job
        .report
        .iter()
        .filter(|l| l.state != PhotoState::Enrolled)
        .collect();
    lines.sort_by(|a, b| a.name.cmp(&b.name));
    for line in &lines {
        println!(
            "{}\t{}\t{}\t{}",
            line.name,
            line.state,
            line.code.as_deref().unwrap_or("-"),
            line.reason.as_deref().unwrap_or("")
        );
    }
    println!(
        "job {}: {} of {} photos enrolled, {} refused, {} dropped, {} expired",
        job.id, job.enrolled, job.photos, job.refused, job.dropped, job.expired
    );
    Ok(())
}

fn bar(job: &JobJson) -> String {
    const WIDTH: usize = 30;
    let done = job.photos - job.waiting;
    let filled = (done * WIDTH).checked_div(job.photos).unwrap_or(WIDTH);
    format!(
        "[{}{}] {done}/{} photos  enrolled {}  refused {}",
        "#".repeat(filled),
        "-".repeat(WIDTH - filled),
        job.photos,
        job.enrolled,
        job.refused + job.dropped + job.expired
    )
}

/// The answer's JSON, or the server's error sentence.
async fn read<T: serde::de::DeserializeOwned>(answer: reqwest::Response) -> Result<T> {
    let status = answer.status();
    let text = answer.text().await?;
    if !status.is_success() {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v["message"].as_str().map(str::to_owned))
            .unwrap_or(text);
        bail!("{status}: {message}");
    }
    serde_json::from_str(&text).with_context(|| format!("an unreadable answer: {text}"))
}
