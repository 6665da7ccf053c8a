//! What the server benches share: child processes that end with the bench, free ports, and the
//! MongoDB-wire server a run measures against.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process killed when dropped.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

pub fn wait_for_port(port: u16, within: Duration) {
    let deadline = Instant::now() + within;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on port {port}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A MongoDB-wire server for the run: the test script's (`ROLLCALL_TEST_MONGODB_URI`), or
/// SecantusDB from `.venv` in memory, started here and ended with the returned `Process`.
pub fn mongo_uri() -> (String, Option<Process>) {
    if let Ok(uri) = std::env::var("ROLLCALL_TEST_MONGODB_URI") {
        return (uri, None);
    }
    let port = free_port();
    let bin = Path::new(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/secantusd-py");
    let child = Command::new(&bin)
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(["--storage-path", ":memory:"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}; run scripts/setup first", bin.display()));
    wait_for_port(port, Duration::from_secs(30));
    (
        format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
        Some(Process(child)),
    )
}
