//! A real SMTP sink for the notice tests: `scripts/smtp_sink.py` (aiosmtpd, from the project's
//! virtualenv) on a free loopback port, keeping each accepted message as a file.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Sink {
    pub port: u16,
    child: Child,
    dir: PathBuf,
    _keep: Option<tempfile::TempDir>,
}

/// One accepted message: its headers (lower-case names, unfolded) and its decoded text.
#[derive(Clone, Debug)]
pub struct Mail {
    pub headers: HashMap<String, String>,
    pub body: String,
}

impl Mail {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

impl Sink {
    /// A sink answering `answers` to the first messages (`451`, `550`), refusing `reject`.
    pub fn start(answers: &[&str], reject: &[&str]) -> Sink {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_owned();
        Sink::start_on(
            super::process::free_port(),
            &path,
            answers,
            reject,
            Some(dir),
        )
    }

    /// A sink on `port` writing into `dir` (a sink started again where one was).
    pub fn start_on(
        port: u16,
        dir: &Path,
        answers: &[&str],
        reject: &[&str],
        keep: Option<tempfile::TempDir>,
    ) -> Sink {
        let root = root();
        let mut cmd = Command::new(root.join(".venv/bin/python"));
        cmd.arg(root.join("scripts/smtp_sink.py"))
            .args(["--port", &port.to_string()])
            .arg("--out")
            .arg(dir)
            .args(["--answers", &answers.join(",")]);
        for r in reject {
            cmd.args(["--reject", r]);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .spawn()
            .expect("run scripts/smtp_sink.py with .venv/bin/python (scripts/setup makes it)");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
        Sink {
            port,
            child,
            dir: dir.to_owned(),
            _keep: keep,
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the sink (the port refuses connections from now on).
    pub fn stop(&mut self) {
        self.child.kill().ok();
        self.child.wait().ok();
    }

    pub fn mails(&self) -> Vec<Mail> {
        mails_in(&self.dir)
    }

    /// Waits until at least `n` messages are in; panics after `secs`.
    pub async fn wait_for(&self, n: usize, secs: u64) -> Vec<Mail> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let mails = self.mails();
            if mails.len() >= n {
                return mails;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} messages after {secs} s",
                mails.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A `[smtp]` section sending to this sink.
    pub fn config(&self, extra: &str) -> String {
        format!(
            "[smtp]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\nfrom = \"Hill School <attendance@hill.example.org>\"\npublic_url = \"http://127.0.0.1:1\"\n{extra}\n",
            self.port
        )
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Every message in `dir`, in the order accepted.
pub fn mails_in(dir: &Path) -> Vec<Mail> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "eml"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| parse(&String::from_utf8_lossy(&std::fs::read(p).unwrap())))
        .collect()
}

fn parse(raw: &str) -> Mail {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let mut headers = HashMap::new();
    let mut last: Option<String> = None;
    for line in head.lines() {
        if line.starts_with(' ') || line.starts_with('\t') {
            if let Some(name) = &last {
                headers
                    .entry(name.clone())
                    .and_modify(|v: &mut String| v.push_str(line.trim_start()));
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_lowercase();
            headers.insert(name.clone(), value.trim().to_owned());
            last = Some(name);
        }
    }
    Mail {
        headers,
        body: quoted_printable(body),
    }
}

/// Undoes quoted-printable soft breaks and escapes (lettre uses it for long lines).
fn quoted_printable(text: &str) -> String {
    let text = text.replace("=\n", "");
    let mut out = Vec::with_capacity(text.len());
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'='
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
