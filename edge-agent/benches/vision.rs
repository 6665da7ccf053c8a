//! Pipeline benchmark: prints a table of per-stage and end-to-end times on classroom frames composed
//! from ../shared photos, batch vs single embedding, 1 vs 2 threads, cold start and peak memory.
//!
//! `cargo bench -p edge-agent --bench vision [-- --quick]`. Times are medians of repeated runs in
//! this one process; compare rows with each other, not with another machine's.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::vision::{
    DEFAULT_BATCH, Face, Pick, Pipeline, PipelineOptions, RuntimeOptions, select_face,
};

/// LFW photos, one per person, in a stable order.
fn lfw_photos(n: usize) -> Vec<PathBuf> {
    let dir = common::faces_dir().join("lfw-dev/images");
    let mut people: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    people.sort();
    people
        .iter()
        .filter_map(|p| {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)
                .ok()?
                .map(|e| e.unwrap().path())
                .collect();
            files.sort();
            files.into_iter().next()
        })
        .take(n)
        .collect()
}

struct Timing {
    median: Duration,
    p90: Duration,
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> Timing {
    for _ in 0..2 {
        std::hint::black_box(f());
    }
    let mut samples: Vec<Duration> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            std::hint::black_box(f());
            start.elapsed()
        })
        .collect();
    samples.sort();
    Timing {
        median: samples[samples.len() / 2],
        p90: samples[(samples.len() * 9 / 10).min(samples.len() - 1)],
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn row(what: &str, threads: usize, t: &Timing, note: &str) {
    println!(
        "| {what} | {threads} | {:.1} | {:.1} | {note} |",
        ms(t.median),
        ms(t.p90)
    );
}

fn load(threads: usize) -> Pipeline {
    Pipeline::load(&PipelineOptions {
        runtime: RuntimeOptions {
            intra_threads: threads,
            models_dir: None,
        },
        ..PipelineOptions::default()
    })
    .expect("run scripts/setup first")
}

fn frame_rows(pipelines: &mut [(usize, Pipeline)], runs: usize) {
    for (width, height, face_px) in [(1280u32, 720u32, 90u32), (1920, 1080, 130)] {
        for n_faces in [1usize, 10, 30] {
            let frame = common::compose_frame(width, height, &lfw_photos(n_faces), face_px);
            for (threads, pipeline) in pipelines.iter_mut() {
                let threads = *threads;
                let faces = pipeline.faces(&frame).unwrap();
                let label = format!("{width}x{height}, {n_faces} faces");
                let found = format!("{} of {n_faces} found", faces.len());
                row(
                    &format!("{label}: detect"),
                    threads,
                    &time(runs, || pipeline.detector.detect(&frame).unwrap()),
                    &found,
                );
                let template = pipeline.manifest().embedder.template;
                row(
                    &format!("{label}: align all"),
                    threads,
                    &time(runs, || {
                        faces
                            .iter()
                            .map(|f| {
                                edge_agent::vision::align_face(
                                    &frame,
                                    &f.detection.landmarks,
                                    &template,
                                    112,
                                )
                            })
                            .collect::<Vec<_>>()
                    }),
                    "",
                );
                row(
                    &format!("{label}: embed all (batched)"),
                    threads,
                    &time(runs, || {
                        pipeline.embed(faces.iter().map(|f| &f.aligned)).unwrap()
                    }),
                    "",
                );
                let e2e = time(runs, || {
                    let faces = pipeline.faces(&frame).unwrap();
                    pipeline.embed(faces.iter().map(|f| &f.aligned)).unwrap()
                });
                let legacy = 1000.0 + 400.0 * n_faces as f64;
                row(
                    &format!("**{label}: detect+align+embed**"),
                    threads,
                    &e2e,
                    &format!(
                        "legacy ~{legacy:.0} ms (detect 1000 + 400/face): {:.0}x faster",
                        legacy / ms(e2e.median)
                    ),
                );
            }
        }
    }
}

fn embed_rows(pipelines: &mut [(usize, Pipeline)], runs: usize) {
    let photos = lfw_photos(32);
    for (threads, pipeline) in pipelines.iter_mut() {
        let aligned: Vec<_> = photos
            .iter()
            .filter_map(|p| {
                let frame = load_image(p, &ImageLimits::default()).unwrap();
                pipeline
                    .faces(&frame)
                    .unwrap()
                    .into_iter()
                    .next()
                    .map(|f| f.aligned)
            })
            .collect();
        let n = aligned.len() as u32;
        let single = time(runs, || {
            pipeline.embedder.embed_in_batches(&aligned, 1).unwrap()
        });
        row(
            "embed per face, batch 1",
            *threads,
            &per(&single, n),
            "legacy encode 300-500 ms per call",
        );
        for batch_size in [4, DEFAULT_BATCH, aligned.len()] {
            let batched = time(runs, || {
                pipeline
                    .embedder
                    .embed_in_batches(&aligned, batch_size)
                    .unwrap()
            });
            row(
                &format!("embed per face, batch {batch_size}"),
                *threads,
                &per(&batched, n),
                &format!("{:.2}x batch 1", ms(single.median) / ms(batched.median)),
            );
        }
    }
}

fn per(t: &Timing, n: u32) -> Timing {
    Timing {
        median: t.median / n,
        p90: t.p90 / n,
    }
}

fn liveness_rows(pipelines: &mut [(usize, Pipeline)], runs: usize) {
    let photo = &lfw_photos(1)[0];
    let frame = load_image(photo, &ImageLimits::default()).unwrap();
    for (threads, pipeline) in pipelines.iter_mut() {
        let face: Face = pipeline.faces(&frame).unwrap().remove(0);
        row(
            "liveness, one face",
            *threads,
            &time(runs, || {
                pipeline
                    .liveness
                    .live_probability(&frame, &face.detection.bbox)
                    .unwrap()
            }),
            "reported only",
        );
    }
}

/// One enrolment photo, file to embedding: decode, detect, choose the face, embed.
fn enrolment_rows(pipelines: &mut [(usize, Pipeline)], runs: usize) {
    let photo = lfw_photos(1).remove(0);
    for (threads, pipeline) in pipelines.iter_mut() {
        let t = time(runs, || enrol_one(pipeline, &photo));
        row(
            "enrolment photo (decode+detect+select+embed)",
            *threads,
            &t,
            &format!("legacy ~1500 ms: {:.0}x faster", 1500.0 / ms(t.median)),
        );
    }
}

fn enrol_one(pipeline: &mut Pipeline, photo: &Path) -> usize {
    let frame = load_image(photo, &ImageLimits::default()).unwrap();
    let faces = pipeline.faces(&frame).unwrap();
    let idx = select_face(
        &faces,
        &pipeline.gate,
        Some(Pick::Central),
        frame.dimensions(),
    )
    .unwrap();
    pipeline.embed([&faces[idx].aligned]).unwrap().len()
}

/// Whole-process cold start: the release binary embedding one photo, models loaded and verified.
fn cold_start_row() {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/edge-agent");
    if !binary.exists() {
        println!(
            "| process cold start | - | - | - | {} missing: run scripts/setup |",
            binary.display()
        );
        return;
    }
    let photo = lfw_photos(1).remove(0);
    let t = time(5, || {
        let status = std::process::Command::new(&binary)
            .args(["embed", photo.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    });
    row(
        "process start + load/verify models + 1 photo",
        0,
        &t,
        "release binary, cache warm",
    );
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runs = if quick { 3 } else { 15 };
    let start = Instant::now();
    let first = load(2);
    let cold_load = start.elapsed();
    let start = Instant::now();
    let second = load(1);
    let warm_load = start.elapsed();

    println!(
        "{}",
        common::banner("1 or 2 intra-op threads per session, as each row's threads column says")
    );
    println!("| what | threads | median ms | p90 ms | note |");
    println!("|---|---|---|---|---|");
    println!(
        "| Pipeline::load, first in process (runtime dlopen, sha256 of 8.5 MB of models, 3 sessions) | 2 | {:.1} | - | |",
        ms(cold_load)
    );
    println!("| Pipeline::load, again | 1 | {:.1} | - | |", ms(warm_load));
    cold_start_row();
    let mut pipelines = vec![(1usize, second), (2usize, first)];
    enrolment_rows(&mut pipelines, runs);
    embed_rows(&mut pipelines, runs);
    liveness_rows(&mut pipelines, runs);
    frame_rows(&mut pipelines, runs);
    println!(
        "\npeak RSS of this process: {:.0} MiB (two pipelines loaded)",
        common::peak_rss_mib()
    );
}
