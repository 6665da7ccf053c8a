//! A TCP proxy that makes a bad network on purpose: of the requests it carries, a share has its
//! connection dropped before the server sees it, stalled until the client gives up, or cut in the
//! middle of the server's answer (after the server has acted on the request). The rest pass
//! untouched. Fates are drawn per request, not per connection, since a client keeps its
//! connection alive across calls. Seeded, so a failing run can be replayed; it serves only
//! loopback and stops with its owner.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
pub struct Counts {
    pub passed: AtomicUsize,
    pub dropped: AtomicUsize,
    pub stalled: AtomicUsize,
    pub cut: AtomicUsize,
}

impl Counts {
    pub fn faults(&self) -> usize {
        self.dropped.load(Ordering::Relaxed)
            + self.stalled.load(Ordering::Relaxed)
            + self.cut.load(Ordering::Relaxed)
    }
}

pub struct FlakyProxy {
    pub port: u16,
    pub counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

enum Fate {
    Pass,
    Drop,
    Stall,
    /// Forward the request, then only this many bytes of the answer.
    Cut(usize),
}

impl Fate {
    fn draw(rng: &Mutex<Rng>, fault_rate: f64) -> Fate {
        let mut rng = rng.lock().unwrap();
        if rng.unit() >= fault_rate {
            return Fate::Pass;
        }
        match rng.next() % 3 {
            0 => Fate::Drop,
            1 => Fate::Stall,
            _ => Fate::Cut(1 + (rng.next() % 300) as usize),
        }
    }
}

/// xorshift64*: enough randomness for choosing fates, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl FlakyProxy {
    /// Forwards to `127.0.0.1:target`, spoiling `fault_rate` of the connections.
    pub fn start(target: u16, fault_rate: f64, stall: Duration, seed: u64) -> FlakyProxy {
        FlakyProxy::start_with(target, fault_rate, stall, seed, 0)
    }

    /// Forwards to `127.0.0.1:target`, stalling the first `first` requests for `stall` (then
    /// dropping them) and passing the rest.
    pub fn stalling(target: u16, first: usize, stall: Duration) -> FlakyProxy {
        FlakyProxy::start_with(target, 0.0, stall, 1, first)
    }

    fn start_with(
        target: u16,
        fault_rate: f64,
        stall: Duration,
        seed: u64,
        stall_first: usize,
    ) -> FlakyProxy {
        let stalls_left = Arc::new(AtomicUsize::new(stall_first));
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let counts = Arc::new(Counts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let rng = Arc::new(Mutex::new(Rng(seed | 1)));
        let thread = {
            let (counts, stop) = (counts.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let client = match listener.accept() {
                        Ok((client, _)) => client,
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                            continue;
                        }
                        Err(_) => continue,
                    };
                    client.set_nonblocking(false).unwrap();
                    let (counts, rng) = (counts.clone(), rng.clone());
                    let stalls_left = stalls_left.clone();
                    std::thread::spawn(move || {
                        serve(
                            client,
                            target,
                            fault_rate,
                            stall,
                            &rng,
                            &counts,
                            &stalls_left,
                        )
                    });
                }
            })
        };
        FlakyProxy {
            port,
            counts,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(
    client: TcpStream,
    target: u16,
    fault_rate: f64,
    stall: Duration,
    rng: &Mutex<Rng>,
    counts: &Counts,
    stalls_left: &AtomicUsize,
) {
    let Ok(server) = TcpStream::connect(("127.0.0.1", target)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    // 0: no cut; n: forward n more bytes of the answer, then close.
    let cut = Arc::new(AtomicUsize::new(0));
    // Set once the server has answered: the client's next bytes are a new request.
    let answered = Arc::new(AtomicBool::new(true));
    let downstream = {
        let (mut server, mut client) = (server.try_clone().unwrap(), client.try_clone().unwrap());
        let (cut, answered) = (cut.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            let mut sent_since_cut = 0;
            loop {
                let n = match server.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                let limit = cut.load(Ordering::SeqCst);
                let n = if limit > 0 {
                    n.min(limit - sent_since_cut)
                } else {
                    n
                };
                if client.write_all(&buf[..n]).is_err() {
                    break;
                }
                answered.store(true, Ordering::SeqCst);
                if limit > 0 {
                    sent_since_cut += n;
                    if sent_since_cut >= limit {
                        break;
                    }
                }
            }
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        })
    };
    let (mut client_in, mut server_out) = (client, server);
    let mut buf = [0u8; 16 * 1024];
    loop {
        let n = match client_in.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if answered.swap(false, Ordering::SeqCst) {
            let stall_this = stalls_left
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
            let fate = if stall_this {
                Fate::Stall
            } else {
                Fate::draw(rng, fault_rate)
            };
            match fate {
                Fate::Pass => {
                    counts.passed.fetch_add(1, Ordering::Relaxed);
                }
                Fate::Drop => {
                    counts.dropped.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                Fate::Stall => {
                    counts.stalled.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(stall);
                    break;
                }
                Fate::Cut(limit) => {
                    counts.cut.fetch_add(1, Ordering::Relaxed);
                    cut.store(limit, Ordering::SeqCst);
                }
            }
        }
        if server_out.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client_in.shutdown(Shutdown::Both);
    let _ = server_out.shutdown(Shutdown::Both);
    let _ = downstream.join();
}
