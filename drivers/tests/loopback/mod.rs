//! A real HTTP server on loopback for tests of http drivers: it records what it received
//! and answers what the test scripts (status, body, a delay). HTTP/1.1, one request per
//! connection.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    /// Header names in lowercase.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// What the server answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
    pub delay: Duration,
}

impl Reply {
    pub fn json(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.as_bytes().to_vec(),
            delay: Duration::ZERO,
        }
    }
}

/// A connection the server speaks HTTP over.
pub trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

type Script = Arc<dyn Fn(&Seen, usize) -> Reply + Send + Sync>;

/// A running loopback server.
pub struct Loopback {
    pub base: String,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Loopback {
    /// Starts a server answering each request with `script(request, its number from 0)`.
    pub fn start(script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static) -> Self {
        Self::start_wrapped("http", script, |conn| Some(Box::new(conn)))
    }

    /// Starts a server of `scheme` that speaks over what `wrap` makes of each accepted
    /// connection (a TLS session, say; `None` drops the connection).
    pub fn start_wrapped(
        scheme: &str,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
        wrap: impl Fn(TcpStream) -> Option<Box<dyn Conn>> + Send + Sync + 'static,
    ) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let script: Script = Arc::new(script);
        let wrap = Arc::new(wrap);
        let s = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (s, script, wrap) = (s.clone(), script.clone(), wrap.clone());
                std::thread::spawn(move || {
                    if let Some(conn) = wrap(conn) {
                        serve(conn, &s, &script)
                    }
                });
            }
        });
        Self { base, seen }
    }

    /// What it received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

fn serve(conn: Box<dyn Conn>, seen: &Mutex<Vec<Seen>>, script: &Script) {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    let mut headers = vec![];
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.trim_end().split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
        }
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let request = Seen {
        method,
        target,
        headers,
        body,
    };
    let n = {
        let mut s = seen.lock().unwrap();
        s.push(request.clone());
        s.len() - 1
    };
    let reply = script(&request, n);
    std::thread::sleep(reply.delay);
    let conn = reader.get_mut();
    let head = format!(
        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        reply.status,
        reply.body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(&reply.body);
    let _ = conn.flush();
}
