//! A real HTTP server on loopback that records what it received and answers what its
//! script says: the stand-in service an http driver is red-teamed against before it may
//! be promoted (`redteam`), and the endpoint the tests of http drivers run against.
//! HTTP/1.1, one request per connection, bounded: a request head over
//! [`MAX_HEAD_BYTES`], a body over [`MAX_BODY_BYTES`], a chunked body or a connection
//! silent for [`READ_TIMEOUT`] is answered with an error (or dropped) and not recorded;
//! at most [`MAX_CONNECTIONS`] connections are served at once. It stops when dropped.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The largest request line and headers read.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;
/// The largest request body read.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
/// How long a connection may stay silent.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; more are closed unanswered.
pub const MAX_CONNECTIONS: usize = 64;
/// Requests recorded; later ones are answered 503 and not recorded.
pub const MAX_RECORDED: usize = 100_000;

/// One request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    pub method: String,
    /// The request target as sent (path and query, still percent-encoded).
    pub target: String,
    /// Header names in lowercase, values as sent (without surrounding spaces).
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Seen {
    /// The value of header `name` (lowercase), the first where it is repeated.
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
    /// How long it waits before answering.
    pub delay: Duration,
}

impl Reply {
    /// An answer of `status` with the JSON text `body`, at once.
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
type Wrap = Arc<dyn Fn(TcpStream) -> Option<Box<dyn Conn>> + Send + Sync>;

/// A running loopback server.
pub struct Loopback {
    /// `http://127.0.0.1:PORT` (or the scheme it was started with).
    pub base: String,
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
}

impl Loopback {
    /// Starts a server answering each request with `script(request, its number from 0)`.
    pub fn start(
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        Self::start_wrapped("http", script, |conn| Some(Box::new(conn)))
    }

    /// Starts a server of `scheme` that speaks over what `wrap` makes of each accepted
    /// connection (a TLS session, say; `None` drops the connection).
    pub fn start_wrapped(
        scheme: &str,
        script: impl Fn(&Seen, usize) -> Reply + Send + Sync + 'static,
        wrap: impl Fn(TcpStream) -> Option<Box<dyn Conn>> + Send + Sync + 'static,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let script: Script = Arc::new(script);
        let wrap: Wrap = Arc::new(wrap);
        let (s, halt) = (seen.clone(), stop.clone());
        std::thread::Builder::new()
            .name("axon-loopback".into())
            .spawn(move || accept(listener, s, script, wrap, halt))?;
        Ok(Self {
            base: format!("{scheme}://{addr}"),
            addr,
            seen,
            stop,
        })
    }

    /// What it received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// How many requests it received so far.
    pub fn count(&self) -> usize {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

impl Drop for Loopback {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the accepting thread, which then sees the stop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
    }
}

fn accept(
    listener: TcpListener,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Script,
    wrap: Wrap,
    stop: Arc<AtomicBool>,
) {
    let serving = Arc::new(AtomicUsize::new(0));
    for conn in listener.incoming() {
        if stop.load(Ordering::Acquire) {
            return;
        }
        let Ok(conn) = conn else { continue };
        if serving.fetch_add(1, Ordering::AcqRel) >= MAX_CONNECTIONS {
            serving.fetch_sub(1, Ordering::AcqRel);
            continue;
        }
        let _ = conn.set_read_timeout(Some(READ_TIMEOUT));
        let _ = conn.set_write_timeout(Some(READ_TIMEOUT));
        let (s, script, wrap, count) =
            (seen.clone(), script.clone(), wrap.clone(), serving.clone());
        let spawned = std::thread::Builder::new()
            .name("axon-loopback-conn".into())
            .spawn(move || {
                if let Some(conn) = wrap(conn) {
                    serve(conn, &s, &script);
                }
                count.fetch_sub(1, Ordering::AcqRel);
            });
        if spawned.is_err() {
            serving.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// Why a request was not read.
enum Unread {
    /// The connection ended or went silent: nothing to answer.
    Gone,
    /// Answered with this status, not recorded.
    Refused(u16, &'static str),
}

/// Reads one line of the head, counting it against the head's bound.
fn head_line(reader: &mut impl BufRead, used: &mut usize) -> Result<String, Unread> {
    let mut line = Vec::new();
    let limit = (MAX_HEAD_BYTES - *used) as u64 + 1;
    let n = reader
        .take(limit)
        .read_until(b'\n', &mut line)
        .map_err(|_| Unread::Gone)?;
    *used += n;
    if *used > MAX_HEAD_BYTES {
        return Err(Unread::Refused(431, "the request head is too large"));
    }
    if n == 0 {
        return Err(Unread::Gone);
    }
    String::from_utf8(line).map_err(|_| Unread::Refused(400, "the request head is not UTF-8"))
}

fn read_request(reader: &mut impl BufRead) -> Result<Seen, Unread> {
    let mut used = 0;
    let line = head_line(reader, &mut used)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let mut parts = line.splitn(3, ' ');
    let method = parts.next().unwrap_or("").to_owned();
    let target = parts.next().unwrap_or("").to_owned();
    if method.is_empty()
        || target.is_empty()
        || !parts.next().is_some_and(|v| v.starts_with("HTTP/"))
    {
        return Err(Unread::Refused(400, "not an HTTP/1.1 request line"));
    }
    let mut headers = vec![];
    loop {
        let h = head_line(reader, &mut used)?;
        if h == "\r\n" || h == "\n" {
            break;
        }
        let Some((k, v)) = h.trim_end_matches(['\r', '\n']).split_once(':') else {
            return Err(Unread::Refused(400, "a header line without a colon"));
        };
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    if headers.iter().any(|(k, _)| k == "transfer-encoding") {
        return Err(Unread::Refused(501, "chunked bodies are not read"));
    }
    let len = match headers.iter().find(|(k, _)| k == "content-length") {
        None => 0,
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| Unread::Refused(400, "content-length is not a number"))?,
    };
    if len > MAX_BODY_BYTES {
        return Err(Unread::Refused(413, "the body is too large"));
    }
    // Read as it arrives, never allocated ahead of it.
    let mut body = Vec::new();
    reader
        .take(len as u64)
        .read_to_end(&mut body)
        .map_err(|_| Unread::Gone)?;
    if body.len() != len {
        return Err(Unread::Gone);
    }
    Ok(Seen {
        method,
        target,
        headers,
        body,
    })
}

fn answer(conn: &mut dyn Conn, status: u16, body: &[u8]) {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body);
    let _ = conn.flush();
}

fn serve(conn: Box<dyn Conn>, seen: &Mutex<Vec<Seen>>, script: &Script) {
    let mut reader = BufReader::new(conn);
    let request = match read_request(&mut reader) {
        Ok(r) => r,
        Err(Unread::Gone) => return,
        Err(Unread::Refused(status, why)) => {
            let body = serde_json::json!({ "error": why }).to_string();
            answer(reader.get_mut().as_mut(), status, body.as_bytes());
            return;
        }
    };
    let n = {
        let mut s = seen.lock().unwrap_or_else(|e| e.into_inner());
        if s.len() >= MAX_RECORDED {
            drop(s);
            let body = serde_json::json!({ "error": "the recorder is full" }).to_string();
            answer(reader.get_mut().as_mut(), 503, body.as_bytes());
            return;
        }
        s.push(request.clone());
        s.len() - 1
    };
    let reply = script(&request, n);
    std::thread::sleep(reply.delay);
    answer(reader.get_mut().as_mut(), reply.status, &reply.body);
}
