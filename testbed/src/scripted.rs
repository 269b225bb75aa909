//! A scripted HTTP/1.1 upstream for fault and hostile-input tests: each request
//! names (header `x-script: <id>`) a [`Script`] registered beforehand, and gets
//! exactly that script's bytes, cut into the script's chunks, ended the
//! script's way: a proper end, a TCP reset after N body bytes (`SO_LINGER 0`,
//! then close), a plain close after N bytes, or a stream held open until the
//! peer goes away.
//!
//! Standard library only, one thread per connection, keep-alive supported (Envoy
//! reuses upstream connections). Records what each request carried and what was
//! written, for [`ScriptedUpstream::wait_served`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use crate::http1::request::read_request;
use crate::http1::{Request, RequestReader};

/// The longest [`End::Hold`] keeps a stream open.
const MAX_HOLD: Duration = Duration::from_secs(60);
const IO_TIMEOUT: Duration = Duration::from_secs(60);

/// How the body is cut into writes.
#[derive(Clone, Debug)]
pub enum Chunking {
    /// One write.
    Whole,
    /// Writes of this many bytes (the last may be shorter).
    Fixed(usize),
    /// Writes of these sizes, in order, cycling; a 0 is taken as 1.
    Sizes(Vec<usize>),
    /// Writes at given times: for each, the pause before it and its size in
    /// bytes (a 0 is taken as 1). The pauses are kept on a schedule from the
    /// moment the response head was written (write k is due at the sum of the
    /// first k pauses), so sleeps do not add up drift. Bytes past the last entry
    /// go in one more write without a pause. [`Script::gap`] is not used.
    Timed(Vec<(Duration, usize)>),
}

/// How the response ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum End {
    /// The whole body, then the end of the chunked body (or the full length).
    Complete,
    /// After this many body bytes (at most the body), a TCP RST: `SO_LINGER` 0, close.
    ResetAfter(usize),
    /// After this many body bytes, a plain close (FIN) without ending the body.
    CloseAfter(usize),
    /// The whole body, then nothing more (no end) until the peer goes away.
    Hold,
}

/// One scripted response.
#[derive(Clone, Debug)]
pub struct Script {
    /// The response status; 0: no response, the connection is reset at once.
    pub status: u16,
    pub content_type: String,
    pub extra_headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub chunking: Chunking,
    /// Pause before every write after the first.
    pub gap: Duration,
    /// `transfer-encoding: chunked` (true) or `content-length` (false).
    pub chunked: bool,
    pub end: End,
}

impl Script {
    /// A 200 `text/event-stream`, chunked, in one write, completed.
    pub fn sse(body: impl Into<Vec<u8>>) -> Script {
        Script {
            status: 200,
            content_type: "text/event-stream".to_string(),
            extra_headers: Vec::new(),
            body: body.into(),
            chunking: Chunking::Whole,
            gap: Duration::ZERO,
            chunked: true,
            end: End::Complete,
        }
    }

    /// A JSON body with `content-length`.
    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Script {
        Script {
            status,
            content_type: "application/json".to_string(),
            chunked: false,
            ..Script::sse(body)
        }
    }

    /// A 200 `text/event-stream`, chunked, completed: the body is the writes'
    /// bytes joined, each written after its pause ([`Chunking::Timed`]).
    pub fn timed_sse(writes: Vec<(Duration, Vec<u8>)>) -> Script {
        let chunking = Chunking::Timed(writes.iter().map(|(p, b)| (*p, b.len())).collect());
        let body: Vec<u8> = writes.into_iter().flat_map(|(_, b)| b).collect();
        Script::sse(body).chunking(chunking)
    }

    pub fn chunking(mut self, c: Chunking) -> Script {
        self.chunking = c;
        self
    }

    pub fn gap(mut self, gap: Duration) -> Script {
        self.gap = gap;
        self
    }

    pub fn end(mut self, end: End) -> Script {
        self.end = end;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Script {
        self.extra_headers
            .push((name.to_string(), value.to_string()));
        self
    }
}

/// What was served for one request.
#[derive(Clone, Debug)]
pub struct Served {
    /// The status answered (0: none, the connection was reset).
    pub status: u16,
    /// Lowercase names: what Envoy forwarded.
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
    /// Every body byte written, in order (without chunk framing).
    pub sent: Vec<u8>,
    /// The body was written whole and ended as the script says (for
    /// [`End::Hold`]: written whole, and the peer went away).
    pub complete: bool,
    /// When the response head had been written.
    pub started: Instant,
    /// One per body write: when it had completed (`write_all` returned), and
    /// the body offset just past it.
    pub writes: Vec<(Instant, usize)>,
    /// When the handler was done with it.
    pub finished: Instant,
}

impl Served {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.request_headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Picks the script for a request the registry does not name, and the id its
/// record goes under (see [`ScriptedUpstream::start_with`]).
type Chooser = dyn Fn(&Request) -> Option<(String, Script)> + Send + Sync;

#[derive(Default)]
struct Shared {
    choose: Option<Box<Chooser>>,
    scripts: Mutex<HashMap<String, Script>>,
    /// Requests as they arrive (headers, body), by script id.
    arrived: Mutex<HashMap<String, Served>>,
    served: Mutex<HashMap<String, Served>>,
    changed: Condvar,
    stop: AtomicBool,
    requests: AtomicUsize,
}

impl Shared {
    fn script_for(&self, req: &Request) -> (String, Option<Script>) {
        if let Some((id, script)) = self.choose.as_ref().and_then(|choose| choose(req)) {
            return (id, Some(script));
        }
        let id = req.header("x-script").unwrap_or_default().to_string();
        let script = Shared::lock(&self.scripts).get(&id).cloned();
        (id, script)
    }

    fn lock<'a, T>(m: &'a Mutex<T>) -> MutexGuard<'a, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// A running scripted upstream on 127.0.0.1; it stops when dropped.
pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl ScriptedUpstream {
    pub fn start() -> io::Result<ScriptedUpstream> {
        Self::serve(Shared::default())
    }

    /// Serves each request `choose` answers with its script, under its id;
    /// the others as [`ScriptedUpstream::start`] does (by `x-script`).
    pub fn start_with(
        choose: impl Fn(&Request) -> Option<(String, Script)> + Send + Sync + 'static,
    ) -> io::Result<ScriptedUpstream> {
        Self::serve(Shared {
            choose: Some(Box::new(choose)),
            ..Shared::default()
        })
    }

    fn serve(shared: Shared) -> io::Result<ScriptedUpstream> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(shared);
        let s = Arc::clone(&shared);
        thread::Builder::new()
            .name("scripted-accept".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = Arc::clone(&s);
                    let _ = thread::Builder::new()
                        .name("scripted-conn".into())
                        .spawn(move || serve_connection(conn, &s));
                }
            })?;
        Ok(ScriptedUpstream { addr, shared })
    }

    /// Registers the response for requests carrying `x-script: <id>`.
    pub fn script(&self, id: &str, script: Script) {
        Shared::lock(&self.shared.scripts).insert(id.to_string(), script);
    }

    /// What was served for `id`, once the handler is done; `None` at timeout.
    pub fn wait_served(&self, id: &str, timeout: Duration) -> Option<Served> {
        self.wait_in(&self.shared.served, id, timeout)
    }

    /// The request for `id` as it arrived (before the response); `None` at timeout.
    pub fn wait_arrived(&self, id: &str, timeout: Duration) -> Option<Served> {
        self.wait_in(&self.shared.arrived, id, timeout)
    }

    fn wait_in(
        &self,
        map: &Mutex<HashMap<String, Served>>,
        id: &str,
        timeout: Duration,
    ) -> Option<Served> {
        let deadline = Instant::now() + timeout;
        let mut guard = Shared::lock(map);
        loop {
            if let Some(s) = guard.get(id) {
                return Some(s.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            guard = self
                .shared
                .changed
                .wait_timeout(guard, left.min(Duration::from_millis(50)))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Forgets what was served (keeps long runs small).
    pub fn forget(&self, id: &str) {
        Shared::lock(&self.shared.served).remove(id);
        Shared::lock(&self.shared.arrived).remove(id);
        Shared::lock(&self.shared.scripts).remove(id);
    }

    /// Requests read so far.
    pub fn requests(&self) -> usize {
        self.shared.requests.load(Ordering::SeqCst)
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve_connection(mut conn: TcpStream, shared: &Shared) {
    let _ = conn.set_nodelay(true);
    let _ = conn.set_read_timeout(Some(IO_TIMEOUT));
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let mut reader = RequestReader::default();
    // A close, a read error or garbage ends the connection.
    while let Ok(Some(req)) = read_request(&mut conn, &mut reader) {
        shared.requests.fetch_add(1, Ordering::SeqCst);
        let (id, script) = shared.script_for(&req);
        let now = Instant::now();
        let mut served = Served {
            status: script.as_ref().map_or(404, |s| s.status),
            request_headers: req.headers,
            request_body: req.body,
            sent: Vec::new(),
            complete: false,
            writes: Vec::new(),
            started: now,
            finished: now,
        };
        Shared::lock(&shared.arrived).insert(id.clone(), served.clone());
        shared.changed.notify_all();
        let keep = match script {
            None => {
                let body = format!("{{\"error\":{{\"message\":\"no script {id:?}\"}}}}");
                let _ = write!(
                    conn,
                    "HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len()
                );
                true
            }
            Some(script) => run_script(&mut conn, &script, &mut served),
        };
        served.finished = Instant::now();
        Shared::lock(&shared.served).insert(id, served);
        shared.changed.notify_all();
        if !keep {
            return;
        }
    }
}

/// Writes the response; false when the connection must not be reused.
fn run_script(conn: &mut TcpStream, script: &Script, served: &mut Served) -> bool {
    if script.status == 0 {
        // No response at all: a RST instead of the head.
        reset(conn);
        return false;
    }
    let mut head = format!("HTTP/1.1 {} Scripted\r\n", script.status);
    head.push_str(&format!("content-type: {}\r\n", script.content_type));
    for (k, v) in &script.extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if script.chunked {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("content-length: {}\r\n\r\n", script.body.len()));
    }
    if conn.write_all(head.as_bytes()).is_err() {
        return false;
    }
    served.started = Instant::now();
    let limit = match script.end {
        End::ResetAfter(n) | End::CloseAfter(n) => n.min(script.body.len()),
        End::Complete | End::Hold => script.body.len(),
    };
    let mut offset = 0;
    let mut sizes_at = 0;
    let mut first = true;
    // Chunking::Timed: the next entry, and when its write is due.
    let mut due = served.started;
    while offset < limit {
        let mut pause = None;
        let size = match &script.chunking {
            Chunking::Whole => limit - offset,
            Chunking::Fixed(n) => (*n).max(1),
            Chunking::Sizes(v) if v.is_empty() => limit - offset,
            Chunking::Sizes(v) => {
                let s = v.get(sizes_at % v.len()).copied().unwrap_or(1).max(1);
                sizes_at += 1;
                s
            }
            Chunking::Timed(v) => match v.get(sizes_at) {
                Some(&(p, s)) => {
                    sizes_at += 1;
                    pause = Some(p);
                    s.max(1)
                }
                None => limit - offset,
            },
        };
        let end = (offset + size).min(limit);
        if let Some(p) = pause {
            due += p;
            if let Some(left) = due.checked_duration_since(Instant::now()) {
                thread::sleep(left);
            }
        } else if !first && !script.gap.is_zero() && !matches!(script.chunking, Chunking::Timed(_))
        {
            thread::sleep(script.gap);
        }
        first = false;
        let piece = script.body.get(offset..end).unwrap_or_default();
        let ok = if script.chunked {
            let mut framed = format!("{:x}\r\n", piece.len()).into_bytes();
            framed.extend_from_slice(piece);
            framed.extend_from_slice(b"\r\n");
            conn.write_all(&framed).is_ok()
        } else {
            conn.write_all(piece).is_ok()
        };
        if !ok {
            return false;
        }
        served.sent.extend_from_slice(piece);
        served.writes.push((Instant::now(), end));
        offset = end;
    }
    let _ = conn.flush();
    match script.end {
        End::Complete => {
            if script.chunked && conn.write_all(b"0\r\n\r\n").is_err() {
                return false;
            }
            served.complete = true;
            true
        }
        End::ResetAfter(_) => {
            // Let the last write leave before the RST discards the send queue.
            thread::sleep(Duration::from_millis(20));
            reset(conn);
            false
        }
        End::CloseAfter(_) => {
            let _ = conn.shutdown(std::net::Shutdown::Both);
            false
        }
        End::Hold => {
            let deadline = Instant::now() + MAX_HOLD;
            let _ = conn.set_read_timeout(Some(Duration::from_millis(100)));
            let mut tmp = [0u8; 1024];
            while Instant::now() < deadline {
                match conn.read(&mut tmp) {
                    Ok(0) => {
                        served.complete = true;
                        break;
                    }
                    Ok(_) => {}
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                        ) => {}
                    Err(_) => {
                        served.complete = true;
                        break;
                    }
                }
            }
            false
        }
    }
}

#[repr(C)]
struct Linger {
    l_onoff: i32,
    l_linger: i32,
}

extern "C" {
    fn setsockopt(fd: i32, level: i32, name: i32, value: *const Linger, len: u32) -> i32;
}

/// Close with a RST: `SO_LINGER` on with a 0 s timeout, then close.
fn reset(conn: &TcpStream) {
    use std::os::fd::AsRawFd;
    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;
    let linger = Linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a valid socket fd owned by `conn`, a pointer to a live struct of the
    // size given. Linux values of SOL_SOCKET / SO_LINGER.
    unsafe {
        setsockopt(
            conn.as_raw_fd(),
            SOL_SOCKET,
            SO_LINGER,
            &linger,
            std::mem::size_of::<Linger>() as u32,
        );
    }
    // The caller drops the stream: the close sends the RST.
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;

    #[test]
    fn serves_scripts_chunked_and_resets() {
        let up = ScriptedUpstream::start().unwrap();
        up.script(
            "a",
            Script::sse("data: 1\n\ndata: 2\n\n").chunking(Chunking::Fixed(3)),
        );
        let got = client::post(up.addr, "/x", &[("x-script", "a")], b"{}").unwrap();
        assert_eq!(got.body, b"data: 1\n\ndata: 2\n\n");
        let s = up.wait_served("a", Duration::from_secs(5)).unwrap();
        assert!(s.complete);
        assert_eq!(s.sent, got.body);

        up.script("b", Script::sse(vec![b'x'; 1000]).end(End::ResetAfter(100)));
        let got =
            client::post_until(up.addr, "/x", &[("x-script", "b")], b"{}", usize::MAX).unwrap();
        assert!(!got.complete);
        assert_eq!(got.body.len(), 100);
    }

    #[test]
    fn timed_writes_leave_on_schedule() {
        let up = ScriptedUpstream::start().unwrap();
        let ms = Duration::from_millis;
        let writes = vec![
            (ms(0), b"data: a\n\n".to_vec()),
            (ms(150), b"data: b\n\n".to_vec()),
            (ms(50), b"data: c\n\ndata: d\n\n".to_vec()),
        ];
        up.script("t", Script::timed_sse(writes));
        let got = client::post(up.addr, "/x", &[("x-script", "t")], b"{}").unwrap();
        assert_eq!(got.body, b"data: a\n\ndata: b\n\ndata: c\n\ndata: d\n\n");
        let s = up.wait_served("t", Duration::from_secs(5)).unwrap();
        let ends: Vec<usize> = s.writes.iter().map(|w| w.1).collect();
        assert_eq!(ends, [9, 18, 36]);
        let at: Vec<Duration> = s.writes.iter().map(|w| w.0 - s.started).collect();
        assert!(at[0] < ms(30), "{at:?}");
        assert!(at[1] >= ms(150) && at[1] < ms(190), "{at:?}");
        assert!(at[2] >= ms(200) && at[2] < ms(240), "{at:?}");
        // The client saw three reads, each after its write.
        assert_eq!(got.frames.len(), 3, "{:?}", got.frames);

        // Bytes past the schedule go in one last write.
        up.script(
            "r",
            Script::sse("0123456789").chunking(Chunking::Timed(vec![(ms(0), 4)])),
        );
        client::post(up.addr, "/x", &[("x-script", "r")], b"{}").unwrap();
        let s = up.wait_served("r", Duration::from_secs(5)).unwrap();
        let ends: Vec<usize> = s.writes.iter().map(|w| w.1).collect();
        assert_eq!(ends, [4, 10]);
    }
}
