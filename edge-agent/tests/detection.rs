//! The detector on labelled group photos (dlib's PASCAL VOC faces): every labelled face found, few
//! false detections.

mod common;

use common::{faces_dir, faces_of, pipeline};

/// `(file, [(left, top, width, height)])` per `<image>` of a dlib imglab XML file.
fn labelled_boxes(xml: &str) -> Vec<(String, Vec<[f32; 4]>)> {
    let attr = |tag: &str, name: &str| -> String {
        let start = tag
            .find(&format!("{name}='"))
            .unwrap_or_else(|| panic!("{name} missing in {tag}"))
            + name.len()
            + 2;
        tag[start..].split('\'').next().unwrap().to_owned()
    };
    let mut images = Vec::new();
    for chunk in xml.split("<image ").skip(1) {
        let head = chunk.split('>').next().unwrap();
        let boxes = chunk
            .split("<box ")
            .skip(1)
            .map(|b| ["left", "top", "width", "height"].map(|n| attr(b, n).parse::<f32>().unwrap()))
            .collect();
        images.push((attr(head, "file"), boxes));
    }
    images
}

#[test]
fn every_labelled_group_face_is_found() {
    let dir = faces_dir().join("groups");
    let mut pipeline = pipeline();
    let (mut n_labelled, mut unlabelled_detections, mut missed) = (0, 0, Vec::new());
    for xml in ["training.xml", "testing.xml"] {
        let text = std::fs::read_to_string(dir.join(xml)).unwrap();
        for (file, boxes) in labelled_boxes(&text) {
            let (_, faces) = faces_of(&mut pipeline, &dir.join(&file));
            let contains = |face: &edge_agent::vision::Face, [x, y]: [f32; 2]| {
                let b = face.detection.bbox;
                b[0] <= x && x <= b[2] && b[1] <= y && y <= b[3]
            };
            let centres: Vec<[f32; 2]> = boxes
                .iter()
                .map(|[l, t, w, h]| [l + w / 2.0, t + h / 2.0])
                .collect();
            for (label_idx, centre) in centres.iter().enumerate() {
                let n_containing = faces.iter().filter(|f| contains(f, *centre)).count();
                if n_containing != 1 {
                    missed.push(format!(
                        "{file} face {label_idx} at {centre:?}: in {n_containing} detections"
                    ));
                }
            }
            unlabelled_detections += faces
                .iter()
                .filter(|f| !centres.iter().any(|c| contains(f, *c)))
                .count();
            n_labelled += boxes.len();
        }
    }
    eprintln!(
        "groups: {n_labelled} labelled faces, {} not found exactly once, {unlabelled_detections} unlabelled detections",
        missed.len()
    );
    assert_eq!(n_labelled, 43);
    assert!(missed.is_empty(), "{missed:#?}");
    assert!(
        unlabelled_detections <= 2,
        "{unlabelled_detections} unlabelled detections"
    );
}

/// Detections come back in the original image's pixels whatever size the detector ran at.
#[test]
fn boxes_are_in_original_pixels_when_the_frame_is_scaled() {
    let path = faces_dir().join("groups/2008_001009.jpg");
    let mut pipeline = pipeline();
    let (frame, native) = faces_of(&mut pipeline, &path);
    let big = image::imageops::resize(
        &frame,
        frame.width() * 2,
        frame.height() * 2,
        image::imageops::FilterType::Triangle,
    );
    // With the long side capped at the original's, the detector sees about the original image and
    // must report twice its coordinates.
    pipeline
        .detector
        .set_options(edge_agent::vision::DetectOptions {
            max_side: frame.width().max(frame.height()),
            upscale: 1.0,
        });
    let scaled = pipeline.faces(&big).unwrap();
    assert_eq!(native.len(), scaled.len());
    for (a, b) in native.iter().zip(&scaled) {
        for (x, y) in a.detection.bbox.iter().zip(b.detection.bbox) {
            assert!(
                (x * 2.0 - y).abs() < 4.0,
                "{:?} vs {:?}",
                a.detection.bbox,
                b.detection.bbox
            );
        }
    }
}
