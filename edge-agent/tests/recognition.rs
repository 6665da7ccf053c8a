//! The pipeline on real photographs: LFW verification, the celebrity pairs, and batching.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{embed_central, faces_dir, pipeline, read_lfw_dev_pairs};

/// LFW dev folds 1-2 (1,200 pairs): accuracy at the best threshold, and the error rates at the
/// manifest's review threshold.
#[test]
fn lfw_dev_pairs() {
    let dir = faces_dir().join("lfw-dev");
    let pairs = read_lfw_dev_pairs();
    let mut names: Vec<String> = pairs
        .iter()
        .flat_map(|(_, a, b)| [a.clone(), b.clone()])
        .collect();
    names.sort();
    names.dedup();
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join("images").join(n)).collect();

    let mut pipeline = pipeline();
    let review = pipeline.manifest().embedder.review;
    let mut embeddings = HashMap::new();
    let mut failures = Vec::new();
    for (chunk_names, chunk_paths) in names.chunks(64).zip(paths.chunks(64)) {
        for (name, result) in chunk_names
            .iter()
            .zip(embed_central(&mut pipeline, chunk_paths))
        {
            match result {
                Ok(e) => {
                    embeddings.insert(name.clone(), e);
                }
                Err(reason) => failures.push(reason),
            }
        }
    }
    // A photo without a usable face counts as a wrong answer for every pair it is in.
    let scored: Vec<(bool, Option<f32>)> = pairs
        .iter()
        .map(|(same, a, b)| {
            (
                *same,
                embeddings
                    .get(a)
                    .zip(embeddings.get(b))
                    .map(|(x, y)| x.similarity(y).unwrap()),
            )
        })
        .collect();
    let accuracy_at = |threshold: f32| {
        scored
            .iter()
            .filter(|(same, s)| s.is_some_and(|s| (s >= threshold) == *same))
            .count() as f64
            / scored.len() as f64
    };
    let (best_threshold, best_accuracy) = (0..=100)
        .map(|i| i as f32 / 100.0)
        .map(|t| (t, accuracy_at(t)))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap();
    let rate = |same: bool| {
        let group: Vec<_> = scored.iter().filter(|(s, _)| *s == same).collect();
        group
            .iter()
            .filter(|(_, s)| s.is_some_and(|s| s >= review))
            .count() as f64
            / group.len() as f64
    };
    let (true_accept, false_accept) = (rate(true), rate(false));
    eprintln!(
        "LFW dev: {} images, {} without a usable face {:?}; best accuracy {:.2} % at {best_threshold:.2}; at review {review}: TAR {:.2} %, FAR {:.2} %",
        names.len(),
        failures.len(),
        failures,
        best_accuracy * 100.0,
        true_accept * 100.0,
        false_accept * 100.0
    );
    assert!(best_accuracy >= 0.985, "accuracy {best_accuracy}");
    assert!(true_accept >= 0.95, "TAR at review {true_accept}");
    assert!(false_accept <= 0.005, "FAR at review {false_accept}");
}

/// deepface's labelled celebrity pairs: every "Yes" at or above review, every "No" below it.
#[test]
fn celebrity_pairs_split_at_the_review_threshold() {
    let dir = faces_dir().join("celebs");
    let text = std::fs::read_to_string(dir.join("master.csv")).unwrap();
    let pairs: Vec<(String, String, bool)> = text
        .lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|line| {
            let cols: Vec<&str> = line.split(',').collect();
            (
                cols[0].to_owned(),
                cols[1].to_owned(),
                cols[2].trim() == "Yes",
            )
        })
        .collect();
    assert_eq!(pairs.len(), 300);
    let mut names: Vec<String> = pairs
        .iter()
        .flat_map(|(a, b, _)| [a.clone(), b.clone()])
        .collect();
    names.sort();
    names.dedup();
    let paths: Vec<PathBuf> = names.iter().map(|n| dir.join(n)).collect();
    let mut pipeline = pipeline();
    let review = pipeline.manifest().embedder.review;
    let embeddings: HashMap<&String, _> = names
        .iter()
        .zip(embed_central(&mut pipeline, &paths))
        .map(|(name, result)| (name, result.unwrap_or_else(|reason| panic!("{reason}"))))
        .collect();
    let mut wrong = Vec::new();
    let (mut lowest_yes, mut highest_no) = (f32::MAX, f32::MIN);
    for (a, b, same) in &pairs {
        let similarity = embeddings[a].similarity(&embeddings[b]).unwrap();
        if *same {
            lowest_yes = lowest_yes.min(similarity);
        } else {
            highest_no = highest_no.max(similarity);
        }
        if (similarity >= review) != *same {
            wrong.push(format!("{a} {b} same={same} similarity={similarity:.3}"));
        }
    }
    eprintln!(
        "celebs: lowest same-person {lowest_yes:.3}, highest different-person {highest_no:.3}"
    );
    assert!(
        wrong.is_empty(),
        "pairs on the wrong side of {review}: {wrong:#?}"
    );
}

/// One batch of N faces gives what N single calls give.
#[test]
fn batched_embedding_equals_one_at_a_time() {
    let dir = faces_dir().join("celebs");
    let mut pipeline = pipeline();
    let mut aligned = Vec::new();
    for n in [1, 2, 3, 4, 5, 6, 7, 8, 9, 10] {
        let (_, faces) = common::faces_of(&mut pipeline, &dir.join(format!("img{n}.jpg")));
        aligned.extend(faces.into_iter().map(|f| f.aligned));
    }
    assert!(aligned.len() >= 10, "{} faces", aligned.len());
    let single = pipeline.embedder.embed_in_batches(&aligned, 1).unwrap();
    for batch_size in [edge_agent::vision::DEFAULT_BATCH, aligned.len()] {
        let batched = pipeline
            .embedder
            .embed_in_batches(&aligned, batch_size)
            .unwrap();
        assert_eq!(batched.len(), single.len());
        let max_diff = batched
            .iter()
            .zip(&single)
            .flat_map(|(a, b)| a.vector.iter().zip(&b.vector).map(|(x, y)| (x - y).abs()))
            .fold(0.0f32, f32::max);
        eprintln!(
            "{} faces in batches of {batch_size}: max abs difference {max_diff:e}",
            aligned.len()
        );
        assert!(max_diff < 1e-4, "{max_diff}");
    }
}

/// Which channel order the liveness model wants: on real (live-camera) news photos the right order
/// scores far more faces as live. Pins the manifest's `bgr` (issue 2).
#[test]
fn liveness_wants_bgr() {
    use edge_agent::vision::manifest::ChannelOrder;

    let dir = faces_dir().join("lfw-dev/images");
    let mut people: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    people.sort();
    let photos: Vec<PathBuf> = people
        .iter()
        .step_by(4)
        .filter_map(|person| {
            std::fs::read_dir(person)
                .unwrap()
                .next()
                .map(|e| e.unwrap().path())
        })
        .collect();
    let mut pipeline = pipeline();
    assert_eq!(pipeline.liveness.spec().input.channels, ChannelOrder::Bgr);
    let mut live_fraction = |order: ChannelOrder| {
        let mut spec = pipeline.liveness.spec().clone();
        spec.input.channels = order;
        pipeline.liveness.set_spec(spec);
        let mut n_live = 0;
        for photo in &photos {
            let (frame, faces) = common::faces_of(&mut pipeline, photo);
            let face = faces.first().expect("every LFW photo has a face");
            if pipeline
                .liveness
                .live_probability(&frame, &face.detection.bbox)
                .unwrap()
                >= 0.5
            {
                n_live += 1;
            }
        }
        n_live as f64 / photos.len() as f64
    };
    let (bgr, rgb) = (
        live_fraction(ChannelOrder::Bgr),
        live_fraction(ChannelOrder::Rgb),
    );
    eprintln!(
        "liveness on {} LFW photos: live >= 0.5 for {:.1} % in BGR, {:.1} % in RGB",
        photos.len(),
        bgr * 100.0,
        rgb * 100.0
    );
    assert!(bgr >= 0.9 && bgr > rgb + 0.1, "bgr {bgr}, rgb {rgb}");
}
