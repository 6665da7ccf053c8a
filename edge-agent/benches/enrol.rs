//! Central enrolment benchmark (issue 17): 500 LFW photos of 500 people in one ZIP, uploaded to a
//! real `sync-server` with `[ml]` calling a real `edge-agent serve`, timed from the upload to the
//! job's last photo decided and stored. The baseline, in the same run and on the same service: the
//! same photos through `encode-face`, one call at a time (what the service alone takes per photo).
//!
//! The school already holds a gallery (`--gallery N` templates, 6,000 by default: 2,000 students
//! with three each), pushed by a box of the school before the upload: pseudo-random unit vectors in
//! the service's space, like no real face. The bulk runs twice, each on a fresh server and service:
//! once with a service that keeps no galleries (`kept_galleries = 0`: every call of 8 photos sends
//! the whole gallery, as before galleries were kept) and once with the default, where later calls
//! name the kept gallery and send only the templates added since.
//!
//! `cargo build --release -p sync-server && cargo bench -p edge-agent --bench enrol [-- --photos N] [--gallery N]`.

#[path = "common/mod.rs"]
mod bench_common;
#[path = "../tests/common/mod.rs"]
mod common;
#[path = "../tests/sync/fixtures.rs"]
mod fixtures;
#[path = "../tests/sync/server.rs"]
mod server;

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

use common::{ML_KEY, MlService};
use server::{Backend, Server};

fn arg(name: &str, default: usize) -> usize {
    std::env::args()
        .skip_while(|a| a != name)
        .nth(1)
        .map_or(default, |n| n.parse().expect("a number"))
}

/// `n` templates over `students`, in the service's model and space, made on a box of the school
/// and pushed: pseudo-random unit vectors, like no real face (their similarity to one is ~0).
fn seed_gallery(server: &Server, students: &[String], n: usize, status: &Value) {
    let dimensions = status["dimensions"].as_u64().unwrap() as usize;
    let mut state = 0x9E37_79B9_7F4A_7C15_u64;
    let templates = (0..n).map(|i| {
        let mut vector: Vec<f32> = (0..dimensions)
            .map(|_| {
                // xorshift64: reproducible, and no dependency for it.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
            })
            .collect();
        let norm = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
        vector.iter_mut().for_each(|x| *x /= norm);
        (students[i % students.len()].as_str(), vector)
    });
    fixtures::push_templates(server, status, templates);
}

/// One bulk enrolment on a fresh server and service (`serve`: the service's `[serve]` lines).
struct Bulk {
    time: Duration,
    queued: Duration,
    job: Value,
    sent: u64,
    reused: u64,
}

fn bulk(serve: &str, roster: &Path, ids: &[String], gallery: usize, zip: &[u8]) -> Bulk {
    let service = MlService::start(serve, "");
    let mut server = Server::start_configured(
        Backend::Embedded,
        &format!(
            "[ml]\nurl = \"{}\"\napi_key = \"{ML_KEY}\"\nmax_waiting_photos = 100000\n",
            service.base
        ),
    );
    server.set_up_school(roster, ids);
    let status: Value = reqwest::blocking::Client::new()
        .get(service.url("/v1/ml/status"))
        .header("x-api-key", ML_KEY)
        .send()
        .and_then(|r| r.json())
        .unwrap();
    seed_gallery(&server, ids, gallery, &status);
    let started = Instant::now();
    let job = server.upload_zip("bench.zip", zip.to_vec());
    let queued = started.elapsed();
    let job = server.enrolment_done(job["id"].as_str().unwrap(), Duration::from_secs(3600));
    Bulk {
        time: started.elapsed(),
        queued,
        job,
        sent: service.metric("rollcall_ml_gallery_templates_sent_total"),
        reused: service.metric("rollcall_ml_gallery_templates_reused_total"),
    }
}

fn main() {
    // reqwest is built without a crypto provider of its own.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let photos = arg("--photos", 500);
    let gallery = arg("--gallery", 6_000);
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
    let ids: Vec<String> = students.iter().map(|s| s.id.clone()).collect();

    // Baseline: the service alone, one encode-face at a time.
    let baseline = {
        let service = MlService::start("", "");
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let started = Instant::now();
        let mut encoded = 0;
        for path in &paths {
            let image =
                base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap());
            let answer = http
                .post(service.url("/v1/ml/encode-face"))
                .header("x-api-key", ML_KEY)
                .json(&json!({ "image": image }))
                .send()
                .unwrap();
            encoded += usize::from(answer.status().is_success());
        }
        (started.elapsed(), encoded)
    };

    // The bulk enrolment, end to end, without and with kept galleries.
    let names: Vec<String> = students.iter().map(|s| format!("{}.jpg", s.id)).collect();
    let files: Vec<(&str, Vec<u8>)> = names
        .iter()
        .zip(&students)
        .map(|(name, s)| (name.as_str(), std::fs::read(&s.enrol_photo).unwrap()))
        .collect();
    let zip = common::zip_of(&files);
    let zip_mib = zip.len() as f64 / (1 << 20) as f64;
    let runs = [
        (
            "bulk ZIP, whole gallery every call (kept_galleries = 0)",
            bulk("kept_galleries = 0", roster.path(), &ids, gallery, &zip),
        ),
        (
            "bulk ZIP, gallery kept, new templates only (default)",
            bulk("", roster.path(), &ids, gallery, &zip),
        ),
    ];

    let rate = |n: usize, d: Duration| n as f64 / d.as_secs_f64();
    println!(
        "\n{photos} photos of {photos} students, ZIP of {zip_mib:.1} MiB; the school holds {gallery} templates before the upload"
    );
    println!(
        "| path | photos | time | photos/s | per photo | vs baseline | gallery templates sent | named, not sent |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    let (took, encoded) = baseline;
    println!(
        "| encode-face, one call at a time (baseline) | {encoded} | {:.1} s | {:.1} | {:.0} ms | 1.00 | | |",
        took.as_secs_f64(),
        rate(photos, took),
        took.as_secs_f64() * 1000.0 / photos as f64
    );
    for (label, run) in &runs {
        println!(
            "| {label}: upload to every template stored | {} enrolled | {:.1} s | {:.1} | {:.0} ms | {:.2} | {} | {} |",
            run.job["enrolled"],
            run.time.as_secs_f64(),
            rate(photos, run.time),
            run.time.as_secs_f64() * 1000.0 / photos as f64,
            run.time.as_secs_f64() / took.as_secs_f64(),
            run.sent,
            run.reused
        );
    }
    println!(
        "\nkept / whole gallery: {:.2} of the time, {:.3} of the gallery templates sent",
        runs[1].1.time.as_secs_f64() / runs[0].1.time.as_secs_f64(),
        runs[1].1.sent as f64 / runs[0].1.sent.max(1) as f64
    );
    for (label, run) in &runs {
        let mut codes = std::collections::BTreeMap::<String, usize>::new();
        for line in run.job["report"].as_array().unwrap() {
            if let Some(code) = line["code"].as_str() {
                *codes.entry(code.to_owned()).or_default() += 1;
            }
        }
        println!(
            "{label}: upload answered (job queued) in {:.0} ms; refused by code: {codes:?}",
            run.queued.as_secs_f64() * 1000.0
        );
    }
}
