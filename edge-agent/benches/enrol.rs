//! Central enrolment benchmark (issue 17): 500 LFW photos of 500 people in one ZIP, uploaded to a
//! real `sync-server` with `[ml]` calling a real `edge-agent serve`, timed from the upload to the
//! job's last photo decided and stored. The baseline, in the same run and on the same service: the
//! same photos through `encode-face`, one call at a time (what the service alone takes per photo).
//!
//! `cargo build --release -p sync-server && cargo bench -p edge-agent --bench enrol [-- --photos N]`.

#[path = "common/mod.rs"]
mod bench_common;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/sync/server.rs"]
mod server;

use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::json;

use common::{ML_KEY, MlService};
use server::{Backend, Server};

fn main() {
    let photos: usize = std::env::args()
        .skip_while(|a| a != "--photos")
        .nth(1)
        .map_or(500, |n| n.parse().expect("--photos N"));
    let pipelines = std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1));
    println!(
        "{}",
        bench_common::banner(&format!("service: {pipelines} pipeline(s)"))
    );
    let paths = bench_common::lfw_photos(photos);
    let students: Vec<common::Student> = paths
        .iter()
        .map(|p| common::Student {
            id: p
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .into_owned(),
            enrol_photo: p.clone(),
            class_photo: p.clone(),
        })
        .collect();
    let roster = tempfile::tempdir().unwrap();
    common::write_oneroster(roster.path(), &students);
    let service = MlService::start("", "");
    let mut server = Server::start_configured(
        Backend::Embedded,
        &format!(
            "[ml]\nurl = \"{}\"\napi_key = \"{ML_KEY}\"\nmax_waiting_photos = 100000\n",
            service.base
        ),
    );
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();
    server.set_up_school(roster.path(), &ids);

    // Baseline: the service alone, one encode-face at a time.
    let http = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap();
    let started = Instant::now();
    let mut encoded = 0;
    for path in &paths {
        let image = base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap());
        let answer = http
            .post(service.url("/v1/ml/encode-face"))
            .header("x-api-key", ML_KEY)
            .json(&json!({ "image": image }))
            .send()
            .unwrap();
        encoded += usize::from(answer.status().is_success());
    }
    let baseline = started.elapsed();

    // The bulk enrolment, end to end.
    let names: Vec<String> = students.iter().map(|s| format!("{}.jpg", s.id)).collect();
    let files: Vec<(&str, Vec<u8>)> = names
        .iter()
        .zip(&students)
        .map(|(name, s)| (name.as_str(), std::fs::read(&s.enrol_photo).unwrap()))
        .collect();
    let bytes = common::zip_of(&files);
    let zip_mib = bytes.len() as f64 / (1 << 20) as f64;
    let started = Instant::now();
    let job = server.upload_zip("bench.zip", bytes);
    let queued = started.elapsed();
    let job = server.enrolment_done(job["id"].as_str().unwrap(), Duration::from_secs(3600));
    let bulk = started.elapsed();
    let mut codes = std::collections::BTreeMap::<String, usize>::new();
    for line in job["report"].as_array().unwrap() {
        if let Some(code) = line["code"].as_str() {
            *codes.entry(code.to_owned()).or_default() += 1;
        }
    }
    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!("\n{photos} photos of {photos} students, ZIP of {zip_mib:.1} MiB");
    println!("| path | photos | time | photos/s | per photo | vs baseline |");
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| encode-face, one call at a time (baseline) | {encoded} | {:.1} s | {:.1} | {:.0} ms | 1.00 |",
        baseline.as_secs_f64(),
        rate(photos, baseline),
        baseline.as_secs_f64() * 1000.0 / photos as f64
    );
    println!(
        "| bulk ZIP: upload to every template stored | {} enrolled | {:.1} s | {:.1} | {:.0} ms | {:.2} |",
        job["enrolled"],
        bulk.as_secs_f64(),
        rate(photos, bulk),
        bulk.as_secs_f64() * 1000.0 / photos as f64,
        bulk.as_secs_f64() / baseline.as_secs_f64()
    );
    println!(
        "\nupload answered (job queued) in {:.0} ms",
        queued.as_secs_f64() * 1000.0
    );
    println!("refused by code: {codes:?}");
}
