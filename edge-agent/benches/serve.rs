//! The ML service's speed (issue 17): a real `edge-agent serve` on loopback, called by threads on
//! the same cores (so the figures are a floor).
//!
//! `cargo bench -p edge-agent --bench serve [-- --quick]`
//!
//! - encode-face: p50/p95/p99 and photos/s at concurrency 1, 4 and 16, beside the same photos
//!   encoded in this process with the same thread count (the baseline of the same run: what the
//!   HTTP service adds). The legacy service took 300-500 ms per encode.
//! - batch-match: a 1280x720 frame of 30 faces against a gallery of their 30 templates plus
//!   random ones, 1,000 and 15,000 in all (the gallery travels as JSON with every call).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::vision::{Pick, Pipeline, PipelineOptions, RuntimeOptions, select_face};
use serde_json::{Value, json};

const KEY: &str = "benchmark-key-0123456789";

/// The process, its base URL, and its data folder (kept while it runs).
struct Service(Child, String, #[allow(dead_code)] tempfile::TempDir);

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start(pipelines: usize, threads: usize) -> Service {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("edge-agent.toml"),
        format!(
            "[serve]\napi_key_sha256 = \"{}\"\npipelines = {pipelines}\nqueue = 64\nmax_body_bytes = 268435456\n",
            edge_agent::api::hash_key(KEY)
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["--data-dir", dir.path().to_str().unwrap()])
        .args(["--threads", &threads.to_string()])
        .args(["serve", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap()
        .to_owned();
    Service(child, format!("http://{addr}"), dir)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1e3
}

fn client() -> reqwest::blocking::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()
        .unwrap()
}

fn post(client: &reqwest::blocking::Client, url: &str, body: &Value) -> Value {
    let response = client
        .post(url)
        .header("x-api-key", KEY)
        .json(body)
        .send()
        .unwrap();
    assert!(
        response.status().is_success(),
        "{}",
        response.text().unwrap()
    );
    response.json().unwrap()
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let pipelines = (cores / 2).max(1);
    let threads = (cores / pipelines).max(1);
    println!(
        "{}",
        common::banner(&format!(
            "service: {pipelines} pipeline(s) x {threads} inference threads (the default on this host); callers: threads on the same cores"
        ))
    );
    let photos = common::lfw_photos(if quick { 16 } else { 48 });
    let bodies: Vec<Value> = photos
        .iter()
        .map(|p| {
            json!({
                "image": base64::engine::general_purpose::STANDARD.encode(std::fs::read(p).unwrap()),
                "pick": "central",
            })
        })
        .collect();

    // Baseline: the same photos encoded in this process, one at a time, as one pipeline does.
    let mut pipeline = Pipeline::load(&PipelineOptions {
        runtime: RuntimeOptions {
            intra_threads: threads,
            ..RuntimeOptions::default()
        },
        ..PipelineOptions::default()
    })
    .unwrap();
    let mut local = Vec::new();
    for round in 0..2 {
        for photo in &photos {
            let started = Instant::now();
            let bytes = std::fs::read(photo).unwrap();
            let frame = edge_agent::capture::decode_image(&bytes, "photo", &ImageLimits::default())
                .unwrap();
            let faces = pipeline.faces(&frame).unwrap();
            if let Ok(i) = select_face(
                &faces,
                &pipeline.gate,
                Some(Pick::Central),
                frame.dimensions(),
            ) {
                std::hint::black_box(pipeline.embed([&faces[i].aligned]).unwrap());
            }
            if round == 1 {
                local.push(started.elapsed());
            }
        }
    }
    local.sort();
    let local_p50 = percentile(&local, 0.5);

    let service = start(pipelines, threads);
    let url = |path: &str| format!("{}{path}", service.1);
    // Warm-up.
    for body in bodies.iter().take(4) {
        post(&client(), &url("/v1/ml/encode-face"), body);
    }
    println!(
        "| encode-face | calls | p50 ms | p95 ms | p99 ms | photos/s | p50 / in-process p50 |"
    );
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| in this process, one at a time (baseline) | {} | {local_p50:.1} | {:.1} | {:.1} | {:.1} | 1.00 |",
        local.len(),
        percentile(&local, 0.95),
        percentile(&local, 0.99),
        1e3 / local_p50,
    );
    for concurrency in [1usize, 4, 16] {
        let rounds = if quick { 1 } else { 2 };
        let per_thread = (bodies.len() * rounds).div_ceil(concurrency);
        let started = Instant::now();
        let mut latencies: Vec<Duration> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..concurrency)
                .map(|t| {
                    let (bodies, url) = (&bodies, url("/v1/ml/encode-face"));
                    scope.spawn(move || {
                        let client = client();
                        (0..per_thread)
                            .map(|i| {
                                let body = &bodies[(t * per_thread + i) % bodies.len()];
                                let sent = Instant::now();
                                post(&client, &url, body);
                                sent.elapsed()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| w.join().unwrap())
                .collect()
        });
        let wall = started.elapsed().as_secs_f64();
        latencies.sort();
        let p50 = percentile(&latencies, 0.5);
        println!(
            "| concurrency {concurrency} | {} | {p50:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
            latencies.len(),
            percentile(&latencies, 0.95),
            percentile(&latencies, 0.99),
            latencies.len() as f64 / wall,
            p50 / local_p50,
        );
    }

    // Batch-match: 30 faces of a composed frame against 30 real templates plus random ones.
    let class = common::lfw_photos(30);
    let frame = common::compose_frame(1280, 720, &class, 90);
    let mut png = Vec::new();
    frame
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let frame_b64 = base64::engine::general_purpose::STANDARD.encode(&png);
    let http = client();
    let status = http
        .get(url("/v1/ml/status"))
        .header("x-api-key", KEY)
        .send()
        .unwrap()
        .json::<Value>()
        .unwrap();
    let mut real = Vec::new();
    for (i, photo) in class.iter().enumerate() {
        let image = load_image(photo, &ImageLimits::default()).unwrap();
        let mut png = Vec::new();
        image
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        let encoded = post(
            &http,
            &url("/v1/ml/encode-face"),
            &json!({ "image": base64::engine::general_purpose::STANDARD.encode(&png), "pick": "central" }),
        );
        let v: Vec<f32> = encoded["embedding"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        real.push((format!("s{i:02}"), v));
    }
    println!();
    println!(
        "| batch-match, 1280x720 frame, 30 faces | templates | vectors as | body MB | p50 ms | p95 ms | present of 30 | unknown | in-process match_frame p50 ms | p50 / in-process |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    // Random unit vectors: strangers to every face of the frame.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut random = || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    };
    let strangers: Vec<Vec<f32>> = (0..15_000 - real.len())
        .map(|_| {
            let v: Vec<f64> = (0..512).map(|_| random()).collect();
            let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
            v.iter().map(|x| (x / norm) as f32).collect()
        })
        .collect();
    for (total, f32le) in [
        (1_000usize, false),
        (1_000, true),
        (15_000, false),
        (15_000, true),
    ] {
        let entry = |student: String, v: &[f32]| {
            if f32le {
                json!({ "student": student, "f32le": shared_proto::sync::f32le_encode(v) })
            } else {
                json!({ "student": student, "embedding": v })
            }
        };
        let mut gallery: Vec<Value> = real
            .iter()
            .map(|(student, v)| entry(student.clone(), v))
            .collect();
        for (n, v) in strangers.iter().take(total - real.len()).enumerate() {
            gallery.push(entry(format!("r{n:05}"), v));
        }
        let body = json!({ "image": frame_b64, "space": status["space"], "gallery": gallery });
        let bytes = serde_json::to_vec(&body).unwrap();
        let runs = if quick { 3 } else { 10 };
        let mut latencies = Vec::new();
        let mut last = Value::Null;
        for _ in 0..runs + 1 {
            let sent = Instant::now();
            let response = http
                .post(url("/v1/ml/batch-match"))
                .header("x-api-key", KEY)
                .header("content-type", "application/json")
                .body(bytes.clone())
                .send()
                .unwrap();
            assert!(response.status().is_success());
            last = response.json().unwrap();
            latencies.push(sent.elapsed());
        }
        latencies.remove(0);
        latencies.sort();
        // Baseline: the same frame and gallery in this process (no HTTP, no JSON).
        let gallery_local = edge_agent::attendance::Gallery::new(
            512,
            real.iter()
                .map(|(student, v)| (student.clone(), v.clone()))
                .chain(
                    strangers
                        .iter()
                        .take(total - real.len())
                        .enumerate()
                        .map(|(n, v)| (format!("r{n:05}"), v.clone())),
                )
                .enumerate()
                .map(
                    |(i, (student_id, vector))| edge_agent::store::TemplateRecord {
                        uuid: i.to_string(),
                        student_id,
                        vector,
                    },
                ),
        );
        let thresholds = edge_agent::attendance::Thresholds::of(&pipeline);
        let mut in_process: Vec<Duration> = (0..runs + 1)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(
                    edge_agent::attendance::capture::match_frame(
                        &mut pipeline,
                        &frame,
                        &gallery_local,
                        thresholds,
                    )
                    .unwrap(),
                );
                started.elapsed()
            })
            .skip(1)
            .collect();
        in_process.sort();
        let local = percentile(&in_process, 0.5);
        println!(
            "| | {total} | {} | {:.1} | {:.1} | {:.1} | {} | {} | {local:.1} | {:.2} |",
            if f32le {
                "f32le (base64)"
            } else {
                "JSON numbers"
            },
            bytes.len() as f64 / 1e6,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.95),
            last["present"].as_array().map_or(0, Vec::len),
            last["unknown_faces"],
            percentile(&latencies, 0.5) / local,
        );
    }
}
