//! Pipeline benchmark: prints a table of per-stage and end-to-end times on classroom frames composed
//! from ../shared photos, batch vs single embedding, 1 vs 2 threads, cold start and peak memory.
//!
//! `cargo bench -p edge-agent --bench vision [-- --quick] [-- --runs N]`; `-- --daz [--rounds N]`
//! only the rows with denormals-as-zero off and on (the full run ends with them, 3 rounds of child
//! processes); `-- --enrol-list FILE` one enrolment per listed photo (scripts/bench-legacy). Times
//! are medians of repeated runs in this one process; compare rows with each other, not with another
//! machine's.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::vision::{
    AlignedFace, DEFAULT_BATCH, Face, Pick, Pipeline, PipelineOptions, RuntimeOptions, select_face,
};

/// LFW photos, one per person, in a stable order.
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
            ..RuntimeOptions::default()
        },
        ..PipelineOptions::default()
    })
    .expect("run scripts/setup first")
}

fn frame_rows(pipelines: &mut [(usize, Pipeline)], runs: usize) {
    for (width, height, face_px) in [(1280u32, 720u32, 90u32), (1920, 1080, 130)] {
        for n_faces in [1usize, 10, 30] {
            let frame = common::compose_frame(width, height, &common::lfw_photos(n_faces), face_px);
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
    let photos = common::lfw_photos(32);
    for (threads, pipeline) in pipelines.iter_mut() {
        let aligned = first_faces(pipeline, &photos);
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

/// The first face found in each photo, aligned: what the embedding rows embed.
fn first_faces(pipeline: &mut Pipeline, photos: &[PathBuf]) -> Vec<AlignedFace> {
    photos
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
        .collect()
}

fn per(t: &Timing, n: u32) -> Timing {
    Timing {
        median: t.median / n,
        p90: t.p90 / n,
    }
}

fn liveness_rows(pipelines: &mut [(usize, Pipeline)], runs: usize) {
    let photo = &common::lfw_photos(1)[0];
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
    let photo = common::lfw_photos(1).remove(0);
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
    let n = enrol_any(pipeline, photo);
    assert_eq!(n, 1, "{}: no usable face", photo.display());
    n
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
    let photo = common::lfw_photos(1).remove(0);
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

/// The value after `flag` on the command line.
fn arg_value(flag: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != flag).nth(1)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    // 21 runs a row: the 30-face target is read on a median of at least 20 runs.
    let runs = arg_value("--runs")
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 3 } else { 21 });
    if std::env::args().any(|a| a == DAZ_CHILD) {
        daz_child(runs);
        return;
    }
    if let Some(list) = arg_value("--enrol-list") {
        enrol_list(Path::new(&list), runs);
        return;
    }
    if std::env::args().any(|a| a == "--daz") {
        daz_rows(quick);
        return;
    }
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
    println!();
    daz_rows(quick);
}

/// Runs the rows of `daz_rows` in a child process with one denormals-as-zero setting.
const DAZ_CHILD: &str = "--daz-child";

/// The rows that subnormal floats could slow down, with denormals-as-zero off and on, in the same
/// run. Each setting runs in child processes of its own, alternating: ONNX Runtime sets the flag
/// on the thread that builds the first session of a process, once, so one process cannot hold
/// both settings honestly.
fn daz_rows(quick: bool) {
    let rounds = arg_value("--rounds")
        .and_then(|n| n.parse().ok())
        .unwrap_or(if quick { 1 } else { 3 });
    let exe = std::env::current_exe().expect("the bench's own path");
    // samples[daz][row name], and the 30-face embeddings each setting produced.
    let mut samples: [Vec<(String, Vec<f64>)>; 2] = [Vec::new(), Vec::new()];
    let mut vectors: [Vec<f32>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        // Off first in even rounds, on first in odd ones, so a host that slows down over the run
        // does not favour one setting.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for daz in order {
            let mut child = std::process::Command::new(&exe);
            child
                .arg(DAZ_CHILD)
                .env("ROLLCALL_ORT_DAZ", daz.to_string());
            if quick {
                child.arg("--quick");
            }
            let out = child.output().expect("the DAZ child process");
            assert!(
                out.status.success(),
                "DAZ child failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            for line in String::from_utf8_lossy(&out.stdout).lines() {
                let fields: Vec<&str> = line.split('\t').collect();
                match fields.as_slice() {
                    ["sample", name, value] => {
                        let value: f64 = value.parse().unwrap();
                        match samples[daz].iter_mut().find(|(n, _)| n == name) {
                            Some((_, values)) => values.push(value),
                            None => samples[daz].push(((*name).to_owned(), vec![value])),
                        }
                    }
                    ["vectors", values] if vectors[daz].is_empty() => {
                        vectors[daz] = values.split(',').map(|v| v.parse().unwrap()).collect();
                    }
                    _ => {}
                }
            }
        }
    }
    println!(
        "Denormals as zero (`ROLLCALL_ORT_DAZ=0/1`), 2 threads, {rounds} alternating child process(es) per setting:\n"
    );
    println!(
        "| what | threads | DAZ off median ms | DAZ off p90 ms | DAZ on median ms | DAZ on p90 ms | off / on |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, off) in &samples[0] {
        let on = &samples[1].iter().find(|(n, _)| n == name).unwrap().1;
        let (off, on) = (median_p90(off), median_p90(on));
        println!(
            "| {name} | 2 | {:.1} | {:.1} | {:.1} | {:.1} | {:.2}x |",
            off.0,
            off.1,
            on.0,
            on.1,
            off.0 / on.0
        );
    }
    let diff = vectors[0]
        .iter()
        .zip(&vectors[1])
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "\nembeddings of the 30-face frame, DAZ on vs off: {} values, largest difference {diff:.1e}",
        vectors[0].len()
    );
}

fn median_p90(values: &[f64]) -> (f64, f64) {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let p90 = (sorted.len() * 9 / 10).min(sorted.len() - 1);
    (sorted[sorted.len() / 2], sorted[p90])
}

/// One DAZ setting's rows: every sample on its own line (`sample\tROW\tMS`) for the parent to
/// pool, then the 30-face frame's embeddings (`vectors\tV,V,...`).
fn daz_child(runs: usize) {
    let mut pipeline = load(2);
    let aligned = first_faces(&mut pipeline, &common::lfw_photos(32));
    let n = aligned.len() as f64;
    let frame = common::compose_frame(1280, 720, &common::lfw_photos(30), 90);
    let photo = common::lfw_photos(1).remove(0);
    let sample = |name: &str, per: f64, f: &mut dyn FnMut()| {
        for _ in 0..2 {
            f();
        }
        for _ in 0..runs {
            let start = Instant::now();
            f();
            println!("sample\t{name}\t{}", ms(start.elapsed()) / per);
        }
    };
    sample("embed per face, batch 1", n, &mut || {
        std::hint::black_box(pipeline.embedder.embed_in_batches(&aligned, 1).unwrap());
    });
    sample(
        &format!("embed per face, batch {DEFAULT_BATCH}"),
        n,
        &mut || {
            std::hint::black_box(
                pipeline
                    .embedder
                    .embed_in_batches(&aligned, DEFAULT_BATCH)
                    .unwrap(),
            );
        },
    );
    sample(
        "enrolment photo (decode+detect+select+embed)",
        1.0,
        &mut || {
            std::hint::black_box(enrol_one(&mut pipeline, &photo));
        },
    );
    sample("1280x720, 30 faces: detect+align+embed", 1.0, &mut || {
        let faces = pipeline.faces(&frame).unwrap();
        std::hint::black_box(pipeline.embed(faces.iter().map(|f| &f.aligned)).unwrap());
    });
    let faces = pipeline.faces(&frame).unwrap();
    let embeddings = pipeline.embed(faces.iter().map(|f| &f.aligned)).unwrap();
    let values: Vec<String> = embeddings
        .iter()
        .flat_map(|e| e.vector.iter().map(|v| v.to_string()))
        .collect();
    println!("vectors\t{}", values.join(","));
}

/// `--enrol-list FILE`: one enrolment (file to embedding) per photo of the list, the median of
/// `runs` for each, at 1 and 2 threads; `scripts/bench-legacy` times the legacy stack on the same
/// list and reads the `enrol` lines.
fn enrol_list(list: &Path, runs: usize) {
    let photos: Vec<PathBuf> = std::fs::read_to_string(list)
        .unwrap_or_else(|e| panic!("{}: {e}", list.display()))
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(PathBuf::from)
        .collect();
    println!(
        "{}",
        common::banner("1 or 2 intra-op threads per session, as each line says")
    );
    for threads in [1, 2] {
        let mut pipeline = load(threads);
        let mut medians = Vec::new();
        for photo in &photos {
            let mut found = 0;
            let t = time(runs, || {
                found = enrol_any(&mut pipeline, photo);
            });
            medians.push(ms(t.median));
            println!(
                "enrol\t{threads}\t{}\t{:.3}\t{found}",
                photo.display(),
                ms(t.median)
            );
        }
        let (median, p90) = median_p90(&medians);
        println!(
            "summary\t{threads}\t{} photos\tmedian {median:.1} ms\tp90 {p90:.1} ms",
            photos.len()
        );
    }
}

/// Like `enrol_one`, but a photo without a usable face is counted (0 embeddings), not a panic.
fn enrol_any(pipeline: &mut Pipeline, photo: &Path) -> usize {
    let frame = load_image(photo, &ImageLimits::default()).unwrap();
    let faces = pipeline.faces(&frame).unwrap();
    match select_face(
        &faces,
        &pipeline.gate,
        Some(Pick::Central),
        frame.dimensions(),
    ) {
        Ok(idx) => pipeline.embed([&faces[idx].aligned]).unwrap().len(),
        Err(_) => 0,
    }
}
