//! A real HTTP server that receives Ferry's notifications in tests: plain
//! HTTP/1.1 on loopback, one thread per connection. It records each request
//! it accepts (headers and body), can be "down" (answers 503 and records
//! nothing) and can answer slowly (to catch a leader mid-delivery), and
//! checks signatures the way a user's receiver would: HMAC-SHA256 of the
//! body under the shared secret, `sha256=<hex>`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request the receiver accepted.
#[derive(Debug, Clone)]
pub struct Received {
    /// Header names in lowercase.
    pub headers: HashMap<String, String>,
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or(serde_json::Value::Null)
    }

    /// Whether `x-ferry-signature-256` is the HMAC of the body under `secret`.
    pub fn signed_with(&self, secret: &[u8]) -> bool {
        let Some(sig) = self.headers.get("x-ferry-signature-256") else {
            return false;
        };
        let Some(hex_sig) = sig.strip_prefix("sha256=") else {
            return false;
        };
        let Ok(tag) = hex::decode(hex_sig) else {
            return false;
        };
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret);
        ring::hmac::verify(&key, &self.body, &tag).is_ok()
    }
}

struct Shared {
    up: AtomicBool,
    delay_ms: AtomicU64,
    refused: AtomicU64,
    got: Mutex<Vec<Received>>,
}

/// The receiver; it stops accepting when dropped (the thread lingers on
/// its listener until the process ends, harmlessly).
pub struct Receiver {
    pub addr: String,
    shared: Arc<Shared>,
}

impl Receiver {
    pub fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("{e}"))
            .to_string();
        let shared = Arc::new(Shared {
            up: AtomicBool::new(true),
            delay_ms: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            got: Mutex::new(Vec::new()),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                let s = s.clone();
                std::thread::spawn(move || serve(conn, &s));
            }
        });
        Receiver { addr, shared }
    }

    /// The URL of `path` on this receiver.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Down: every request gets 503 and is not recorded.
    pub fn set_up(&self, up: bool) {
        self.shared.up.store(up, Ordering::SeqCst);
    }

    /// Answers (and records) each request only after `delay`.
    pub fn set_delay(&self, delay: Duration) {
        self.shared
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::SeqCst);
    }

    /// Requests refused while down.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::SeqCst)
    }

    /// Every request accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.shared
            .got
            .lock()
            .map(|g| g.clone())
            .unwrap_or_default()
    }
}

fn serve(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(write) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let delay = s.delay_ms.load(Ordering::SeqCst);
        if delay > 0 {
            std::thread::sleep(Duration::from_millis(delay));
        }
        let status = if s.up.load(Ordering::SeqCst) {
            if let Ok(mut g) = s.got.lock() {
                g.push(Received { headers, body });
            }
            "200 OK"
        } else {
            s.refused.fetch_add(1, Ordering::SeqCst);
            "503 Service Unavailable"
        };
        let answer = format!("HTTP/1.1 {status}\r\ncontent-length: 2\r\n\r\nok");
        if (&write).write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}
