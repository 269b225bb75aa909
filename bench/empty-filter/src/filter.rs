//! The proxy-wasm contexts. Host calls go through `hostcalls` (which return
//! `Result`) so that nothing here can panic.

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, BufferType, ContextType, LogLevel, MapType, MetricType};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Duration;

const CLUSTER: &str = "streamtap_collector";
const PATH: &str = "/v1/calls";
const AUTHORITY: &str = "streamtap-collector";
const TICK: Duration = Duration::from_millis(200);
const TIMEOUT: Duration = Duration::from_secs(2);
/// Records kept while the collector is slow or gone; the oldest go first.
const MAX_QUEUE: usize = 10_000;
/// Records per POST.
const MAX_BATCH: usize = 64;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(EmptyRoot::default()) });
}}

/// Shared by the root context and the worker's HTTP contexts (one thread per VM).
type Queue = Rc<RefCell<VecDeque<String>>>;

#[derive(Default)]
struct EmptyRoot {
    queue: Queue,
    in_flight: Option<u32>,
    knobs: Knobs,
}

/// What the plugin config asks each call to do, beyond counting chunks.
#[derive(Default, Clone, Copy)]
struct Knobs {
    /// `{"read_body":true}`: copy every chunk into the VM (`get_buffer`).
    read_body: bool,
    /// The price of host calls, for streamtap's per-call cost: this many
    /// request header reads per call (`"header_reads":N`), this many counter
    /// increments (`"counter_adds":N`) on the counter `counter`.
    header_reads: u32,
    counter_adds: u32,
    counter: Option<u32>,
}

/// The number after `"name":` in the config text; 0 when absent.
fn number(config: &[u8], name: &str) -> u32 {
    let key = format!("\"{name}\":");
    let Some(at) = config.windows(key.len()).position(|w| w == key.as_bytes()) else {
        return 0;
    };
    config
        .get(at + key.len()..)
        .unwrap_or_default()
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u32, |n, b| {
            n.saturating_mul(10).saturating_add(u32::from(b - b'0'))
        })
}

impl EmptyRoot {
    fn flush(&mut self) {
        if self.in_flight.is_some() {
            return;
        }
        let body = {
            let mut queue = self.queue.borrow_mut();
            if queue.is_empty() {
                return;
            }
            let n = queue.len().min(MAX_BATCH);
            let mut body = String::with_capacity(2 + n * 16);
            body.push('[');
            for (i, record) in queue.drain(..n).enumerate() {
                if i > 0 {
                    body.push(',');
                }
                body.push_str(&record);
            }
            body.push(']');
            body
        };
        let headers = vec![
            (":method", "POST"),
            (":path", PATH),
            (":authority", AUTHORITY),
            ("content-type", "application/json"),
        ];
        if let Ok(token) =
            hostcalls::dispatch_http_call(CLUSTER, headers, Some(body.as_bytes()), vec![], TIMEOUT)
        {
            self.in_flight = Some(token);
        }
    }
}

impl Context for EmptyRoot {
    fn on_http_call_response(&mut self, token: u32, _: usize, _: usize, _: usize) {
        if self.in_flight == Some(token) {
            self.in_flight = None;
        }
    }
}

impl RootContext for EmptyRoot {
    fn on_configure(&mut self, _size: usize) -> bool {
        // No JSON reader here: the one switch is found as text.
        let config = hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
            .ok()
            .flatten()
            .unwrap_or_default();
        let counter_adds = number(&config, "counter_adds");
        self.knobs = Knobs {
            read_body: config
                .windows(br#""read_body":true"#.len())
                .any(|w| w == br#""read_body":true"#),
            header_reads: number(&config, "header_reads"),
            counter_adds,
            counter: (counter_adds > 0)
                .then(|| hostcalls::define_metric(MetricType::Counter, "empty_filter.adds").ok())
                .flatten(),
        };
        let _ = hostcalls::set_tick_period(TICK);
        true
    }

    fn on_tick(&mut self) {
        self.flush();
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(EmptyHttp {
            queue: Rc::clone(&self.queue),
            chunks: 0,
            bytes: 0,
            knobs: self.knobs,
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct EmptyHttp {
    queue: Queue,
    chunks: u64,
    /// Bytes copied in (with `read_body`), so the copy is used.
    bytes: u64,
    knobs: Knobs,
}

impl Context for EmptyHttp {}

impl HttpContext for EmptyHttp {
    fn on_http_request_headers(&mut self, _headers: usize, _end_of_stream: bool) -> Action {
        for _ in 0..self.knobs.header_reads {
            if let Ok(Some(path)) =
                hostcalls::get_map_value_bytes(MapType::HttpRequestHeaders, ":path")
            {
                self.bytes += path.len() as u64;
            }
        }
        Action::Continue
    }

    fn on_http_response_body(&mut self, body_size: usize, _end_of_stream: bool) -> Action {
        // Count the chunk; read it only as the body-reading floor.
        self.chunks += 1;
        if self.knobs.read_body && body_size > 0 {
            if let Ok(Some(chunk)) =
                hostcalls::get_buffer(BufferType::HttpResponseBody, 0, body_size)
            {
                self.bytes += chunk.len() as u64;
            }
        }
        Action::Continue
    }

    fn on_log(&mut self) {
        if let Some(id) = self.knobs.counter {
            for _ in 0..self.knobs.counter_adds {
                let _ = hostcalls::increment_metric(id, 1);
            }
        }
        let mut queue = self.queue.borrow_mut();
        if queue.len() >= MAX_QUEUE {
            queue.pop_front();
        }
        queue.push_back(format!(
            "{{\"chunks\":{},\"bytes\":{}}}",
            self.chunks, self.bytes
        ));
    }
}
