//! The ML service (`edge-agent serve`, issue 17) as the server meets it: a real process on a free
//! port, real models, `../shared/faces` photos; its answers agree with the CLI's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use common::{ML_KEY as KEY, MlService as Service, faces_dir, png_header_only};
use reqwest::blocking::{Client, multipart};
use serde_json::{Value, json};

fn client() -> Client {
    // reqwest is built without a crypto provider (rustls with ring, as the box's sync client).
    let _ = rustls::crypto::ring::default_provider().install_default();
    Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

fn lfw(name: &str) -> PathBuf {
    let person = name.rsplit_once('_').unwrap().0;
    faces_dir().join("lfw-dev/images").join(person).join(name)
}

fn b64(path: &Path) -> String {
    base64::engine::general_purpose::STANDARD.encode(std::fs::read(path).unwrap())
}

/// POSTs JSON with the key; (status, body).
fn post(service: &Service, path: &str, body: &Value) -> (u16, Value) {
    let response = client()
        .post(service.url(path))
        .header("x-api-key", KEY)
        .json(body)
        .send()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().unwrap())
}

fn cosine(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let norm = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    dot / (norm(a) * norm(b))
}

fn vector(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cli(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(args)
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_endpoint_answers_on_real_photos_and_agrees_with_the_cli() {
    let service = Service::start("pipelines = 1\nqueue = 8", "");
    let http = client();

    // Health needs no key; everything else does.
    let health = http.get(service.url("/health")).send().unwrap();
    assert_eq!(health.status(), 200);
    let refused = http
        .get(service.url("/v1/ml/status"))
        .header("x-api-key", "not-the-key")
        .header("x-request-id", "probe-1")
        .send()
        .unwrap();
    assert_eq!(refused.status(), 401);
    assert_eq!(refused.headers()["x-request-id"], "probe-1");
    let body: Value = refused.json().unwrap();
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(body["request_id"], "probe-1");
    let status: Value = http
        .get(service.url("/v1/ml/status"))
        .bearer_auth(KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["provider"], "cpu");
    assert_eq!(status["dimensions"], 512);
    assert_eq!(status["models"].as_array().unwrap().len(), 3);
    let space = status["space"].clone();

    // Detect, multipart: both faces of the couple.
    let form = multipart::Form::new()
        .file("image", faces_dir().join("groups/couple.jpg"))
        .unwrap();
    let detected: Value = http
        .post(service.url("/v1/ml/detect-faces"))
        .header("x-api-key", KEY)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(detected["faces"].as_array().unwrap().len(), 2, "{detected}");
    assert!(detected["faces"][0]["quality"]["liveness"].is_number());

    // Encode, JSON: the CLI's vector for the same photo.
    let photo = lfw("Abel_Pacheco_0001.jpg");
    let (code, encoded) = post(
        &service,
        "/v1/ml/encode-face",
        &json!({ "image": b64(&photo) }),
    );
    assert_eq!(code, 200, "{encoded}");
    assert_eq!(encoded["space"], space);
    let line = cli(&["embed", "--json", photo.to_str().unwrap()]);
    let from_cli: Value = serde_json::from_str(line.trim()).unwrap();
    let served = vector(&encoded["embedding"]);
    assert_eq!(served.len(), 512);
    assert!(cosine(&served, &vector(&from_cli["embedding"])) >= 0.9999);

    // Match: LFW pairs, the service's verdict and similarity against the CLI's `compare`.
    let pairs = std::fs::read_to_string(faces_dir().join("lfw-dev/pairs.tsv")).unwrap();
    let images = faces_dir().join("lfw-dev/images");
    let chosen: Vec<Vec<&str>> = pairs
        .lines()
        .skip(1)
        .map(|l| l.split('\t').collect::<Vec<_>>())
        .filter(|c| c[1] == "1")
        .take(4)
        .chain(
            pairs
                .lines()
                .skip(1)
                .map(|l| l.split('\t').collect::<Vec<_>>())
                .filter(|c| c[1] == "0")
                .take(4),
        )
        .collect();
    for pair in &chosen {
        let (a, b) = (images.join(pair[2]), images.join(pair[3]));
        let (code, matched) = post(
            &service,
            "/v1/ml/match-faces",
            &json!({ "a": { "image": b64(&a) }, "b": { "image": b64(&b) }, "pick": "central" }),
        );
        assert_eq!(code, 200, "{matched}");
        let said = cli(&[
            "compare",
            "--pick",
            "central",
            a.to_str().unwrap(),
            b.to_str().unwrap(),
        ]);
        let cli_similarity: f64 = said
            .trim()
            .strip_prefix("similarity ")
            .and_then(|s| s.split(':').next())
            .unwrap()
            .parse()
            .unwrap();
        let similarity = matched["similarity"].as_f64().unwrap();
        assert!(
            (similarity - cli_similarity).abs() < 0.0015,
            "{pair:?}: {similarity} vs {said}"
        );
        let words = match matched["verdict"].as_str().unwrap() {
            "same" => ": same person",
            "review" => ": possibly the same person",
            _ => ": different people",
        };
        assert!(said.contains(words), "{pair:?}: {matched} vs {said}");
        assert_eq!(
            pair[1] == "1",
            matched["verdict"] == "same",
            "LFW says {}: {matched}",
            pair[1]
        );
    }

    // Match, multipart: two file parts and a plain pick part.
    let form = multipart::Form::new()
        .file("a", lfw("Abel_Pacheco_0001.jpg"))
        .unwrap()
        .file("b", lfw("Abel_Pacheco_0004.jpg"))
        .unwrap()
        .text("pick", "central");
    let matched: Value = http
        .post(service.url("/v1/ml/match-faces"))
        .header("x-api-key", KEY)
        .multipart(form)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(matched["verdict"], "same", "{matched}");

    // Match against a template already made, and a template of another space refused.
    let (code, matched) = post(
        &service,
        "/v1/ml/match-faces",
        &json!({ "a": { "embedding": encoded["embedding"], "space": space },
                 "b": { "image": b64(&lfw("Abel_Pacheco_0004.jpg")) } }),
    );
    assert_eq!(
        (code, matched["verdict"].as_str()),
        (200, Some("same")),
        "{matched}"
    );
    let (code, refused) = post(
        &service,
        "/v1/ml/match-faces",
        &json!({ "a": { "embedding": encoded["embedding"], "space": "other-model@512" },
                 "b": { "image": b64(&photo) } }),
    );
    assert_eq!(code, 400, "{refused}");
    assert!(
        refused["message"].as_str().unwrap().contains("space"),
        "{refused}"
    );

    // Batch-match: a gallery of three people, a frame of one of them: present, two absent.
    let mut gallery = vec![json!({ "student": "abel", "embedding": encoded["embedding"] })];
    for (student, file) in [
        ("adrien", "Adrien_Brody_0002.jpg"),
        ("al", "Al_Sharpton_0002.jpg"),
    ] {
        let (code, other) = post(
            &service,
            "/v1/ml/encode-face",
            &json!({ "image": b64(&lfw(file)), "pick": "central" }),
        );
        assert_eq!(code, 200, "{file}: {other}");
        // The sync protocol's encoding (base64 of little-endian f32) is taken too.
        let numbers: Vec<f32> = vector(&other["embedding"])
            .iter()
            .map(|&v| v as f32)
            .collect();
        let f32le = shared_proto::sync::f32le_encode(&numbers);
        gallery.push(json!({ "student": student, "f32le": f32le }));
    }
    let (code, decided) = post(
        &service,
        "/v1/ml/batch-match",
        &json!({ "image": b64(&lfw("Abel_Pacheco_0004.jpg")), "space": space, "gallery": gallery }),
    );
    assert_eq!(code, 200, "{decided}");
    assert_eq!(decided["present"].as_array().unwrap().len(), 1, "{decided}");
    assert_eq!(decided["present"][0]["student"], "abel", "{decided}");
    assert_eq!(decided["unknown_faces"], 0, "{decided}");
    assert_eq!(decided["absent"], json!(["adrien", "al"]), "{decided}");
    assert_eq!(decided["review"], json!([]), "{decided}");

    // Bad images: each its own code, never a panic.
    let blank_png = {
        let mut png = Vec::new();
        image::RgbImage::from_pixel(200, 200, image::Rgb([128, 128, 128]))
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        png
    };
    let engine = base64::engine::general_purpose::STANDARD;
    for (bytes, status, code) in [
        (b"not an image at all".to_vec(), 422, "undecodable_image"),
        (png_header_only(20_000, 20_000), 413, "image_too_large"),
        (blank_png.clone(), 422, "no_face"),
        (
            std::fs::read(faces_dir().join("groups/couple.jpg")).unwrap(),
            422,
            "several_faces",
        ),
    ] {
        let (got, body) = post(
            &service,
            "/v1/ml/encode-face",
            &json!({ "image": engine.encode(&bytes) }),
        );
        assert_eq!(
            (got, body["error"].as_str()),
            (status, Some(code)),
            "{body}"
        );
        assert!(!body["request_id"].as_str().unwrap().is_empty());
    }
    let (got, body) = post(&service, "/v1/ml/encode-face", &json!({ "image": "%%%" }));
    assert_eq!(
        (got, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );

    // Enrol: the box's gate, photo by photo. Abel's first photo is enrolled; his fourth, sent as
    // someone else's in the same call, looks like him; forced, it is enrolled; a blank image and a
    // couple are refused with their codes, and the rest of the call still answers.
    let enrol_gallery = json!([gallery[1].clone()]);
    let photos = json!([
        { "student": "abel", "image": b64(&lfw("Abel_Pacheco_0001.jpg")) },
        { "student": "not-abel", "image": b64(&lfw("Abel_Pacheco_0004.jpg")) },
        { "student": "blank", "image": engine.encode(&blank_png) },
        { "student": "couple", "image": b64(&faces_dir().join("groups/couple.jpg")) },
        { "student": "adrien", "image": b64(&lfw("Adrien_Brody_0002.jpg")), "pick": "central" },
    ]);
    let (code, enrolled) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": photos, "space": space, "gallery": enrol_gallery }),
    );
    assert_eq!(code, 200, "{enrolled}");
    let outcomes = enrolled["photos"].as_array().unwrap();
    let words: Vec<(&str, &str)> = outcomes
        .iter()
        .map(|o| {
            (
                o["outcome"].as_str().unwrap(),
                o["error"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        words,
        [
            ("enrolled", ""),
            ("refused", "looks_like_another"),
            ("refused", "no_face"),
            ("refused", "several_faces"),
            ("enrolled", ""),
        ],
        "{enrolled}"
    );
    assert!(cosine(&vector(&outcomes[0]["embedding"]), &served) >= 0.9999);
    assert_eq!(outcomes[1]["other"], "abel", "{enrolled}");
    assert!(outcomes[1]["similarity"].as_f64().unwrap() >= status["confident"].as_f64().unwrap());
    let (code, forced) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [photos[1].clone()], "space": space, "gallery": [{ "student": "abel", "embedding": outcomes[0]["embedding"] }], "force": true }),
    );
    assert_eq!(code, 200, "{forced}");
    assert_eq!(forced["photos"][0]["outcome"], "enrolled", "{forced}");
    // The gallery of a call is kept under the id answered: a later call names it and sends only
    // what was added since (none here), and the look-alike is still found in it.
    let kept = forced["gallery_id"].as_str().unwrap();
    let (code, named) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [photos[1].clone()], "space": space, "gallery_base": kept }),
    );
    assert_eq!(code, 200, "{named}");
    assert_eq!(named["photos"][0]["error"], "looks_like_another", "{named}");
    assert_eq!(named["photos"][0]["other"], "abel", "{named}");
    // Nothing was added: the same gallery, under the same id.
    assert_eq!(named["gallery_id"], forced["gallery_id"], "{named}");
    // A call with no photo keeps its gallery only (a part of one too large for a call); the next
    // names it, and the look-alike is found in it.
    let (code, part) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [], "space": space, "gallery": [{ "student": "abel", "embedding": outcomes[0]["embedding"] }] }),
    );
    assert_eq!(code, 200, "{part}");
    assert_eq!(part["photos"], json!([]), "{part}");
    let (code, on_part) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [photos[1].clone()], "space": space, "gallery_base": part["gallery_id"] }),
    );
    assert_eq!(code, 200, "{on_part}");
    assert_eq!(on_part["photos"][0]["other"], "abel", "{on_part}");
    // Neither a photo nor a gallery: nothing to do, refused.
    let (code, empty) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [], "space": space }),
    );
    assert_eq!(
        (code, empty["error"].as_str()),
        (400, Some("invalid_request")),
        "{empty}"
    );
    // A gallery the service does not keep: 409, and the caller sends the whole gallery again.
    let (code, lost) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [photos[1].clone()], "space": space, "gallery_base": "not-kept" }),
    );
    assert_eq!(
        (code, lost["error"].as_str()),
        (409, Some("gallery_unknown")),
        "{lost}"
    );
    let (code, too_many) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": vec![photos[0].clone(); 9], "space": space }),
    );
    assert_eq!(
        (code, too_many["error"].as_str()),
        (400, Some("invalid_request")),
        "{too_many}"
    );

    // Asked to, the service answers each enrolled photo with its aligned face; embedded again by
    // embed-crops, the crop gives the same vector (what re-embedding after a model change needs).
    let (code, kept) = post(
        &service,
        "/v1/ml/enrol-faces",
        &json!({ "photos": [photos[0].clone()], "space": space, "keep_crops": true }),
    );
    assert_eq!(code, 200, "{kept}");
    assert!(outcomes[0].get("crop").is_none(), "no crop unless asked");
    let crop = kept["photos"][0]["crop"].as_str().unwrap().to_owned();
    assert_eq!(engine.decode(&crop).unwrap().len(), 112 * 112 * 3);
    let (code, again) = post(
        &service,
        "/v1/ml/embed-crops",
        &json!({ "size": 112, "crops": [crop.clone(), crop] }),
    );
    assert_eq!(code, 200, "{again}");
    assert_eq!(again["space"], space, "{again}");
    for made in again["embeddings"].as_array().unwrap() {
        assert!(cosine(&vector(made), &served) >= 0.9999, "{again}");
    }
    for (bad, why) in [
        (json!({ "size": 112, "crops": ["AAAA"] }), "bytes"),
        (json!({ "size": 112, "crops": ["not base64!"] }), "base64"),
        (json!({ "size": 112, "crops": [] }), "1 to 32"),
        (
            json!({ "size": 96, "crops": [kept["photos"][0]["crop"]] }),
            "reads 112x112",
        ),
    ] {
        let (code, refused) = post(&service, "/v1/ml/embed-crops", &bad);
        assert_eq!(
            (code, refused["error"].as_str()),
            (400, Some("invalid_request")),
            "{refused}"
        );
        assert!(
            refused["message"].as_str().unwrap().contains(why),
            "{why}: {refused}"
        );
    }

    // Metrics: per-stage histograms and request counts.
    let metrics = http
        .get(service.url("/metrics"))
        .header("x-api-key", KEY)
        .send()
        .unwrap()
        .text()
        .unwrap();
    for wanted in [
        "rollcall_ml_stage_seconds_bucket{route=\"/v1/ml/encode-face\",stage=\"embed\",le=\"0.1\"}",
        "rollcall_ml_stage_seconds_count{route=\"/v1/ml/batch-match\",stage=\"match_frame\"} 1",
        "rollcall_ml_requests_total{route=\"/v1/ml/encode-face\",status=\"422\"} 3",
        "rollcall_ml_queue_capacity 8",
        "rollcall_ml_rejected_unauthorized_total 1",
        // Enrol calls sent one template each three times (the third a part alone), and named a
        // kept gallery of one template twice.
        "rollcall_ml_gallery_templates_sent_total 3",
        "rollcall_ml_gallery_templates_reused_total 2",
    ] {
        assert!(metrics.contains(wanted), "{wanted} not in\n{metrics}");
    }
}

/// One pipeline, one place in the queue: a burst of calls is answered 503 with Retry-After for
/// what does not fit, and every call that was taken is answered.
#[test]
fn a_full_queue_is_answered_503_at_once() {
    let service = Service::start("pipelines = 1\nqueue = 1", "");
    let photo = b64(&faces_dir().join("groups/selfie-many-people.jpg"));
    let answers: Vec<(u16, Option<String>)> = std::thread::scope(|scope| {
        let calls: Vec<_> = (0..12)
            .map(|_| {
                let (service, photo) = (&service, &photo);
                scope.spawn(move || {
                    let response = client()
                        .post(service.url("/v1/ml/detect-faces"))
                        .header("x-api-key", KEY)
                        .json(&json!({ "image": photo }))
                        .send()
                        .unwrap();
                    let retry = response
                        .headers()
                        .get("retry-after")
                        .map(|v| v.to_str().unwrap().to_owned());
                    (response.status().as_u16(), retry)
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    });
    let busy = answers.iter().filter(|(s, _)| *s == 503).count();
    let done = answers.iter().filter(|(s, _)| *s == 200).count();
    assert!(busy >= 1, "{answers:?}");
    assert_eq!(busy + done, 12, "{answers:?}");
    assert!(done >= 2, "{answers:?}");
    assert!(
        answers
            .iter()
            .filter(|(s, _)| *s == 503)
            .all(|(_, r)| r.as_deref() == Some("1")),
        "{answers:?}"
    );
}

#[test]
fn a_provider_the_runtime_lacks_falls_back_to_the_cpu_with_a_warning() {
    let service = Service::start("pipelines = 1", "provider = \"cuda\"");
    let status: Value = client()
        .get(service.url("/v1/ml/status"))
        .header("x-api-key", KEY)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(status["provider_asked"], "cuda");
    assert_eq!(status["provider"], "cpu");
    let log = std::fs::read_to_string(&service.stderr).unwrap();
    assert!(
        log.contains("has no cuda execution provider: inference runs on the CPU"),
        "{log}"
    );
}

#[test]
fn the_service_refuses_to_start_without_a_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("api_key_sha256 is not set"), "{said}");
    assert!(!said.contains("panicked"), "{said}");
}
