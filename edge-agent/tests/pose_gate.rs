//! Issue 12: does the enrolment pose gate refuse the photos that make worse templates? Every LFW dev
//! photo's central face is embedded with the gate bypassed; the pairs of `pairs.tsv` (600 same,
//! 600 different) are split by the rough yaw of their more turned photo, and every photo as a
//! template against all the others by the template's yaw. `--nocapture` prints the tables that
//! ARCHITECTURE.md ("Quality gate") quotes; the asserts hold the limit where the data put it.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{faces_dir, pipeline};
use edge_agent::enrolment::MAX_ENROL_YAW_DEGREES;
use edge_agent::vision::Embedding;

/// The central usable face of one photo: its rough yaw and its embedding.
struct Photo {
    yaw: f32,
    embedding: Embedding,
}

/// One pair, scored: whether it is one person, its similarity, and the |yaw| it is grouped by
/// (its more turned photo, or its template photo).
struct Scored {
    same: bool,
    similarity: f32,
    yaw: f32,
}

/// Figures of one group of pairs at the manifest's two thresholds.
struct Group {
    n_same: usize,
    n_different: usize,
    /// At review, then at confident: accuracy, TAR (same pairs at or above), FAR (different
    /// pairs at or above).
    accuracy: [f64; 2],
    tar: [f64; 2],
    far: [f64; 2],
    mean_same_similarity: f64,
}

fn group(pairs: &[&Scored], thresholds: [f32; 2]) -> Group {
    let fraction = |n: usize, of: usize| {
        if of == 0 {
            f64::NAN
        } else {
            n as f64 / of as f64
        }
    };
    let n_same = pairs.iter().filter(|p| p.same).count();
    let n_different = pairs.len() - n_same;
    let at = |t: f32, pick: &dyn Fn(&Scored) -> bool| {
        pairs
            .iter()
            .filter(|p| pick(p) && p.similarity >= t)
            .count()
    };
    let tar = thresholds.map(|t| fraction(at(t, &|p| p.same), n_same));
    let far = thresholds.map(|t| fraction(at(t, &|p| !p.same), n_different));
    let accuracy = thresholds.map(|t| {
        let right = pairs
            .iter()
            .filter(|p| (p.similarity >= t) == p.same)
            .count();
        fraction(right, pairs.len())
    });
    let same_sum: f64 = pairs
        .iter()
        .filter(|p| p.same)
        .map(|p| p.similarity as f64)
        .sum();
    Group {
        n_same,
        n_different,
        accuracy,
        tar,
        far,
        mean_same_similarity: same_sum / n_same.max(1) as f64,
    }
}

fn percent(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{:.decimals$}", v * 100.0)
    }
}

/// The rough-yaw buckets of the tables: up to 45 (the gate before issue 12) is accepted either
/// way, 45-60 is what issue 12 let in, above 60 stays refused.
const BUCKETS: [&str; 4] = ["|yaw| 0-30", "|yaw| 30-45", "|yaw| 45-60", "|yaw| > 60"];
const FRONTAL: usize = 0;
const LET_IN: usize = 2;
const REFUSED: usize = 3;
/// The limit before issue 12.
const OLD_MAX_YAW_DEGREES: f32 = 45.0;

fn bucket_of(yaw: f32) -> usize {
    match yaw {
        y if y <= 30.0 => FRONTAL,
        y if y <= OLD_MAX_YAW_DEGREES => FRONTAL + 1,
        y if y <= MAX_ENROL_YAW_DEGREES => LET_IN,
        _ => REFUSED,
    }
}

fn print_header(what: &str, [review, confident]: [f32; 2]) {
    println!(
        "\n| {what} | same | different | accuracy @{review} | accuracy @{confident} | TAR @{review} | TAR @{confident} | FAR @{review} | FAR @{confident} | mean same-pair similarity |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
}

fn print_row(label: &str, g: &Group) {
    println!(
        "| {label} | {} | {} | {} | {} | {} | {} | {} | {} | {:.3} |",
        g.n_same,
        g.n_different,
        percent(g.accuracy[0], 1),
        percent(g.accuracy[1], 1),
        percent(g.tar[0], 1),
        percent(g.tar[1], 1),
        percent(g.far[0], 3),
        percent(g.far[1], 3),
        g.mean_same_similarity
    );
}

#[test]
fn the_pose_gate_refuses_only_poses_that_verify_worse() {
    let dir = faces_dir().join("lfw-dev");
    let pairs = common::read_lfw_dev_pairs();
    let mut names: Vec<&String> = pairs.iter().flat_map(|(_, a, b)| [a, b]).collect();
    names.sort();
    names.dedup();

    let mut pipeline = pipeline();
    let manifest = pipeline.manifest().embedder.clone();
    let thresholds = [manifest.review, manifest.confident];
    // The central face, as the LFW protocol and `embed_central` choose it; the yaw gate is what
    // is measured here, so it is not applied.
    let mut photos: HashMap<&String, Photo> = HashMap::new();
    let mut unusable = Vec::new();
    for name in &names {
        let path: PathBuf = dir.join("images").join(name);
        match common::central_face(&mut pipeline, &path) {
            Ok(face) => {
                let embedding = pipeline.embed([&face.aligned]).unwrap().remove(0);
                photos.insert(
                    name,
                    Photo {
                        yaw: face.quality.yaw_degrees.abs(),
                        embedding,
                    },
                );
            }
            Err(reason) => unusable.push(reason),
        }
    }
    let scored: Vec<Scored> = pairs
        .iter()
        .filter_map(|(same, a, b)| {
            let (a, b) = (photos.get(a)?, photos.get(b)?);
            Some(Scored {
                same: *same,
                similarity: a.embedding.similarity(&b.embedding).unwrap(),
                yaw: a.yaw.max(b.yaw),
            })
        })
        .collect();

    let refused_at = |limit: f32| {
        let n = photos.values().filter(|p| p.yaw > limit).count();
        format!("{n} ({:.1} %)", n as f64 * 100.0 / photos.len() as f64)
    };
    println!(
        "LFW dev: {} photos, {} without a usable face {unusable:?}; |yaw| > {OLD_MAX_YAW_DEGREES} refuses {}, > {MAX_ENROL_YAW_DEGREES} refuses {}; {} of 1200 pairs scored",
        names.len(),
        unusable.len(),
        refused_at(OLD_MAX_YAW_DEGREES),
        refused_at(MAX_ENROL_YAW_DEGREES),
        scored.len()
    );
    let n_photos = |bucket: usize| {
        photos
            .values()
            .filter(|p| bucket_of(p.yaw) == bucket)
            .count()
    };
    println!(
        "photos by |yaw|: {}",
        BUCKETS
            .iter()
            .enumerate()
            .map(|(i, label)| format!("{label}: {}", n_photos(i)))
            .collect::<Vec<_>>()
            .join(", ")
    );
    print_header("pairs.tsv, by the more turned photo", thresholds);
    let select = |keep: &dyn Fn(&Scored) -> bool| -> Vec<&Scored> {
        scored.iter().filter(|p| keep(p)).collect()
    };
    print_row("all", &group(&select(&|_| true), thresholds));
    for limit in [OLD_MAX_YAW_DEGREES, MAX_ENROL_YAW_DEGREES] {
        let accepted = group(&select(&|p| p.yaw <= limit), thresholds);
        print_row(&format!("both accepted (|yaw| <= {limit})"), &accepted);
        let refused = group(&select(&|p| p.yaw > limit), thresholds);
        print_row(&format!("either refused (|yaw| > {limit})"), &refused);
    }
    for (i, label) in BUCKETS.iter().enumerate() {
        print_row(
            label,
            &group(&select(&|p| bucket_of(p.yaw) == i), thresholds),
        );
    }

    // 18 same pairs a refused bucket is too few to tell 89 % from 91 %. Every pair of dev photos
    // gives more: each photo as the template, against every other photo of the same person
    // (genuine) and of everyone else (impostor), grouped by the template photo's yaw.
    let all: Vec<(&str, &Photo)> = photos
        .iter()
        .map(|(name, photo)| (name.split('/').next().unwrap(), photo))
        .collect();
    let mut by_template: Vec<Vec<Scored>> = BUCKETS.iter().map(|_| Vec::new()).collect();
    for (i, (person, template)) in all.iter().enumerate() {
        for (j, (other, photo)) in all.iter().enumerate() {
            if i != j {
                by_template[bucket_of(template.yaw)].push(Scored {
                    same: person == other,
                    similarity: template.embedding.similarity(&photo.embedding).unwrap(),
                    yaw: template.yaw,
                });
            }
        }
    }
    print_header(
        "every pair of dev photos, by the template photo",
        thresholds,
    );
    let template_groups: Vec<Group> = by_template
        .iter()
        .map(|pairs| group(&pairs.iter().collect::<Vec<_>>(), thresholds))
        .collect();
    for (label, g) in BUCKETS.iter().zip(&template_groups) {
        print_row(label, g);
    }

    // The decision, held to the data. Templates from photos turned 45-60 (the old gate refused
    // them) reach the confident threshold as often as frontal ones, give or take the noise of a
    // few dozen pairs; above 60 they clearly do not, so the gate stays there.
    let tar = |bucket: usize| template_groups[bucket].tar[1];
    assert!(
        tar(LET_IN) >= tar(FRONTAL) - 0.05,
        "templates turned 45-60 verify worse than frontal ones: TAR at confident {:.3} vs {:.3}",
        tar(LET_IN),
        tar(FRONTAL)
    );
    assert!(
        tar(REFUSED) <= tar(FRONTAL) - 0.10,
        "templates turned > 60 verify about as well as frontal ones: TAR at confident {:.3} vs {:.3}",
        tar(REFUSED),
        tar(FRONTAL)
    );
}
