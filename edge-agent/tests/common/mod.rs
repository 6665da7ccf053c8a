//! Helpers shared by the integration tests: where the shared photos are, and a loaded pipeline.
#![allow(dead_code)]

pub mod tmux;

use std::path::{Path, PathBuf};

use edge_agent::capture::{ImageLimits, load_image};
use edge_agent::enrolment::MAX_ENROL_YAW_DEGREES;
use edge_agent::vision::{Embedding, Face, Pick, Pipeline, PipelineOptions, select_face};

/// `../shared/faces` beside the checkout (or `ROLLCALL_FACES`).
pub fn faces_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ROLLCALL_FACES") {
        return PathBuf::from(dir);
    }
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/faces");
    assert!(
        dir.is_dir(),
        "{} is missing: the tests need the shared face photos",
        dir.display()
    );
    dir
}

pub fn pipeline() -> Pipeline {
    Pipeline::load(&PipelineOptions::default())
        .expect("run scripts/setup first: it installs ONNX Runtime and the models")
}

/// The faces of one photo.
pub fn faces_of(pipeline: &mut Pipeline, path: &std::path::Path) -> (image::RgbImage, Vec<Face>) {
    let frame = load_image(path, &ImageLimits::default()).unwrap_or_else(|e| panic!("{e}"));
    let faces = pipeline.faces(&frame).unwrap();
    (frame, faces)
}

/// LFW dev folds 1-2 from `pairs.tsv`: `(same person, image a, image b)`, 1,200 pairs.
pub fn read_lfw_dev_pairs() -> Vec<(bool, String, String)> {
    let text = std::fs::read_to_string(faces_dir().join("lfw-dev/pairs.tsv")).unwrap();
    let pairs: Vec<(bool, String, String)> = text
        .lines()
        .skip(1)
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            (cols[1] == "1", cols[2].to_owned(), cols[3].to_owned())
        })
        .collect();
    assert_eq!(pairs.len(), 1200);
    pairs
}

/// The central usable face of a photo (the LFW protocol), or why there is none. No yaw gate:
/// callers that enrol apply it themselves.
pub fn central_face(pipeline: &mut Pipeline, path: &Path) -> Result<Face, String> {
    let (frame, mut faces) = faces_of(pipeline, path);
    select_face(
        &faces,
        &pipeline.gate,
        Some(Pick::Central),
        frame.dimensions(),
    )
    .map(|idx| faces.swap_remove(idx))
    .map_err(|reason| format!("{}: {reason}", path.display()))
}

/// Embeds the central usable face of each photo (the LFW protocol), batched.
pub fn embed_central(pipeline: &mut Pipeline, paths: &[PathBuf]) -> Vec<Result<Embedding, String>> {
    let mut chosen = Vec::new();
    let mut results: Vec<Result<Embedding, String>> = Vec::new();
    let mut slots = Vec::new();
    for path in paths {
        match central_face(pipeline, path) {
            Ok(face) => {
                slots.push(results.len());
                results.push(Err(String::new()));
                chosen.push(face.aligned);
            }
            Err(reason) => results.push(Err(reason)),
        }
    }
    for (slot, embedding) in slots.into_iter().zip(pipeline.embed(&chosen).unwrap()) {
        results[slot] = Ok(embedding);
    }
    results
}

pub struct Student {
    pub id: String,
    pub enrol_photo: PathBuf,
    pub class_photo: PathBuf,
}

/// Distinct people of LFW's same-person pairs whose first photo enrolment accepts.
pub fn students(n_students: usize) -> Vec<Student> {
    let dir = faces_dir().join("lfw-dev");
    let pairs = std::fs::read_to_string(dir.join("pairs.tsv")).unwrap();
    let mut pipeline = pipeline();
    let mut students: Vec<Student> = Vec::new();
    for line in pairs.lines().skip(1) {
        let cols: Vec<&str> = line.split('\t').collect();
        let id = cols[2].split('/').next().unwrap();
        if cols[1] != "1" || students.iter().any(|s| s.id == id) {
            continue;
        }
        let enrol_photo = dir.join("images").join(cols[2]);
        let (frame, faces) = faces_of(&mut pipeline, &enrol_photo);
        let usable = select_face(&faces, &pipeline.gate, None, frame.dimensions())
            .is_ok_and(|i| faces[i].quality.yaw_degrees.abs() <= MAX_ENROL_YAW_DEGREES);
        if usable {
            students.push(Student {
                id: id.to_owned(),
                enrol_photo,
                class_photo: dir.join("images").join(cols[3]),
            });
        }
        if students.len() == n_students {
            return students;
        }
    }
    panic!("pairs.tsv has fewer than {n_students} people with a usable enrolment photo");
}

/// A OneRoster 1.1 bulk export: one school, one term, one class of `students` and its teacher.
pub fn write_oneroster(dir: &Path, students: &[Student]) {
    let mut users = "sourcedId,status,dateLastModified,enabledUser,orgSourcedIds,role,username,givenName,familyName,email,agentSourcedIds\n\
                     t1,,,true,o1,teacher,mrsb,Mary,Brown,,\n"
        .to_owned();
    let mut enrollments = "sourcedId,status,dateLastModified,classSourcedId,schoolSourcedId,userSourcedId,role,primary,beginDate,endDate\n\
                           e0,,,c1,o1,t1,teacher,true,,\n"
        .to_owned();
    for (i, student) in students.iter().enumerate() {
        let (given, family) = student.id.split_once('_').unwrap_or((&student.id, ""));
        users += &format!("{},,,true,o1,student,u{i},{given},{family},,\n", student.id);
        enrollments += &format!("e{},,,c1,o1,{},student,false,,\n", i + 1, student.id);
    }
    let files = [
        (
            "manifest.csv",
            "propertyName,value\nmanifest.version,1.0\noneroster.version,1.1\n\
             file.academicSessions,bulk\nfile.categories,absent\nfile.classes,bulk\n\
             file.courses,absent\nfile.demographics,absent\nfile.enrollments,bulk\n\
             file.orgs,bulk\nfile.users,bulk\nsource.systemName,Crash test SIS\n"
                .to_owned(),
        ),
        (
            "orgs.csv",
            "sourcedId,status,dateLastModified,name,type,identifier,parentSourcedId\n\
             o1,,,Riverside Primary,school,RP01,\n"
                .to_owned(),
        ),
        (
            "academicSessions.csv",
            "sourcedId,status,dateLastModified,title,type,startDate,endDate,parentSourcedId,schoolYear\n\
             term1,,,Autumn term,term,2024-09-01,2024-12-20,,2025\n"
                .to_owned(),
        ),
        (
            "classes.csv",
            "sourcedId,status,dateLastModified,title,classCode,classType,schoolSourcedId,courseSourcedId,termSourcedIds\n\
             c1,,,Year 3 Maths,3M,scheduled,o1,k1,term1\n"
                .to_owned(),
        ),
        ("users.csv", users),
        ("enrollments.csv", enrollments),
    ];
    for (file, text) in files {
        std::fs::write(dir.join(file), text).unwrap();
    }
}

/// A small PNG whose header claims `width` x `height` pixels: what a decompression bomb looks like
/// before anything is decoded.
pub fn png_header_only(width: u32, height: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xffff_ffffu32;
        for &b in bytes {
            crc ^= b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xedb8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut chunk = b"IHDR".to_vec();
    chunk.extend(width.to_be_bytes());
    chunk.extend(height.to_be_bytes());
    chunk.extend([8, 2, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(13u32.to_be_bytes());
    png.extend(&chunk);
    png.extend(crc32(&chunk).to_be_bytes());
    // A few bytes of zlib stream, far too short for the claimed size.
    let idat: Vec<u8> = [
        b"IDAT".as_slice(),
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    ]
    .concat();
    png.extend(8u32.to_be_bytes());
    png.extend(&idat);
    png.extend(crc32(&idat).to_be_bytes());
    png.extend(0u32.to_be_bytes());
    png.extend(b"IEND");
    png.extend(crc32(b"IEND").to_be_bytes());
    png
}

/// The key the tests' ML services take.
pub const ML_KEY: &str = "a-long-random-key-for-the-tests";

/// A real `edge-agent serve` (the ML service), stopped when dropped.
pub struct MlService {
    child: std::process::Child,
    pub base: String,
    pub port: u16,
    pub stderr: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for MlService {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `edge-agent hash-key` of `ML_KEY`.
pub fn ml_key_hash() -> String {
    use std::process::{Command, Stdio};
    let out = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("hash-key")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().unwrap().write_all(ML_KEY.as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

impl MlService {
    /// Starts `edge-agent serve` on a free port with `[serve]` and `[vision]` lines added to its
    /// configuration.
    pub fn start(serve: &str, vision: &str) -> MlService {
        MlService::start_on("127.0.0.1:0", serve, vision)
    }

    /// `start` on `listen`.
    pub fn start_on(listen: &str, serve: &str, vision: &str) -> MlService {
        use std::process::{Command, Stdio};
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("edge-agent.toml"),
            format!(
                "[serve]\napi_key_sha256 = \"{}\"\n{serve}\n[vision]\n{vision}\n",
                ml_key_hash()
            ),
        )
        .unwrap();
        let stderr = dir.path().join("stderr.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
            .args(["--data-dir", dir.path().to_str().unwrap(), "serve"])
            .args(["--listen", listen])
            .env("ROLLCALL_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let addr = listening_address(&mut child).unwrap_or_else(|line| {
            panic!(
                "no address from serve: {line:?}; {}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        let port = addr.rsplit_once(':').unwrap().1.parse().unwrap();
        MlService {
            child,
            base: format!("http://{addr}"),
            port,
            stderr,
            _dir: dir,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// A counter or gauge of the service's `/metrics`; panics when the service has none by
    /// that name.
    pub fn metric(&self, name: &str) -> u64 {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let text = reqwest::blocking::Client::new()
            .get(self.url("/metrics"))
            .header("x-api-key", ML_KEY)
            .send()
            .and_then(|r| r.text())
            .unwrap();
        let value = metric(&text, name).unwrap_or_else(|| panic!("no {name} in\n{text}"));
        value as u64
    }
}

/// A counter or gauge (its line, labels included, is `name value`) of a Prometheus text page.
pub fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// A ZIP of these files, deflated, as schools' tools write them.
pub fn zip_of(files: &[(&str, Vec<u8>)]) -> Vec<u8> {
    use std::io::Write;
    let mut buffer = std::io::Cursor::new(Vec::new());
    {
        let mut zip = zip::ZipWriter::new(&mut buffer);
        for (name, bytes) in files {
            zip.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
    }
    buffer.into_inner()
}

/// The address a server child (`serve`, `daemon`) prints on its first line of stdout, `listening
/// on ADDR`; the line it printed instead when it did not.
pub fn listening_address(child: &mut std::process::Child) -> Result<String, String> {
    use std::io::{BufRead, BufReader};
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout piped"))
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    line.trim()
        .strip_prefix("listening on ")
        .map(str::to_owned)
        .ok_or(line)
}

/// The edge-agent binary on `data_dir`; a panic in it fails the test.
pub fn edge_agent(data_dir: &Path, args: &[&str]) -> std::process::Output {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    output
}

/// The edge-agent binary on `data_dir`, which must succeed; its standard output.
pub fn ok(data_dir: &Path, args: &[&str]) -> String {
    let output = edge_agent(data_dir, args);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The students of a `--json` list, whether names or objects with a `student`, sorted.
pub fn names(list: &serde_json::Value) -> Vec<String> {
    let mut v: Vec<String> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.get("student").unwrap_or(x).as_str().unwrap().to_owned())
        .collect();
    v.sort();
    v
}
