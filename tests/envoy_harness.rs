//! The Envoy harness (testbed::envoy) against the real Envoy: it starts,
//! proxies, reports a failed start with its log, stops without a trace; and
//! the bench's comparison variants (no filter, buffering Lua, empty Wasm,
//! sse_to_metadata) proxy as they should. Integration tests, so that
//! `cargo test --workspace --lib --bins` never starts Envoy.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::fs;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use support::eventually;
use testbed::envoy::{
    empty_filter_wasm_path, envoy_bin, http_get, template_path, Envoy, EnvoyOptions, FilterVariant,
    SSE_TO_METADATA_ADDED_STAT, SSE_TO_METADATA_NAMESPACE,
};
use testbed::http1::request::read_request;
use testbed::http1::RequestReader;

/// A TCP upstream answering every request on a connection with a fixed 200.
fn dummy_upstream() -> (SocketAddr, Arc<AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    thread::spawn(move || {
        for conn in l.incoming() {
            if stop2.load(Ordering::Relaxed) {
                break;
            }
            let Ok(mut c) = conn else { continue };
            thread::spawn(move || {
                let mut reader = RequestReader::default();
                while let Ok(Some(_)) = read_request(&mut c, &mut reader) {
                    let body = "hello from upstream";
                    let resp = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if c.write_all(resp.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (addr, stop)
}

/// Never skip: a missing Envoy fails the test, saying what to run.
fn assert_envoy_present() {
    let bin = envoy_bin();
    assert!(
        bin.exists(),
        "Envoy not found at {} (run `make venv`)",
        bin.display()
    );
}

#[test]
fn real_envoy_without_filter_starts_proxies_and_stops() {
    assert_envoy_present();
    let (upstream, stop_upstream) = dummy_upstream();
    let opts = EnvoyOptions::new(upstream, "127.0.0.1:9".parse().unwrap())
        .with_filter(FilterVariant::NoFilter);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let pid = envoy.pid().unwrap();
    let dir = envoy.dir().to_path_buf();
    assert!(Path::new(&format!("/proc/{pid}")).exists());

    let (code, body) = envoy.admin_get("/ready").unwrap();
    assert_eq!((code, body.trim()), (200, "LIVE"));

    let (code, body) = http_get(
        envoy.listener,
        "/v1/chat/completions",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!((code, body.as_str()), (200, "hello from upstream"));
    assert_eq!(
        envoy.wait_for_stat(
            "cluster.llm_upstream.upstream_rq_200",
            1,
            Duration::from_secs(5)
        ),
        1
    );
    assert!(envoy.stat("http.ingress_http.downstream_rq_completed") >= 1);
    assert_eq!(envoy.stat("no.such.stat"), 0);
    let stats = envoy.stats().unwrap();
    assert!(stats.contains_key("server.live"));
    // The access log is flushed quickly and names the request.
    assert!(
        envoy.wait_for_access_log("status=200 details=via_upstream", Duration::from_secs(5)),
        "{}",
        envoy.access_log()
    );
    assert!(envoy.access_log().contains("summary=-"));
    assert!(
        envoy.wait_for_log("starting main dispatch loop", Duration::from_secs(5)),
        "{}",
        envoy.log()
    );

    let (listener, admin) = (envoy.listener, envoy.admin);
    drop(envoy);
    // The process is gone (reaped, so not even a zombie) and its ports are closed.
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "Envoy pid {pid} still there"
    );
    assert!(TcpStream::connect_timeout(&listener, Duration::from_millis(200)).is_err());
    assert!(TcpStream::connect_timeout(&admin, Duration::from_millis(200)).is_err());
    if std::env::var_os("STREAMTAP_KEEP_TMP").is_none() {
        assert!(!dir.exists(), "temp dir {} not removed", dir.display());
    }
    stop_upstream.store(true, Ordering::Relaxed);
}

#[test]
fn real_envoy_with_buffering_lua_proxies() {
    assert_envoy_present();
    let (upstream, stop_upstream) = dummy_upstream();
    let opts = EnvoyOptions::new(upstream, "127.0.0.1:9".parse().unwrap())
        .with_filter(FilterVariant::BufferingLua);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let (code, body) = http_get(envoy.listener, "/", Duration::from_secs(5)).unwrap();
    assert_eq!((code, body.as_str()), (200, "hello from upstream"));
    let config = fs::read_to_string(&envoy.config_path).unwrap();
    assert!(config.contains("envoy.filters.http.lua"));
    drop(envoy);
    stop_upstream.store(true, Ordering::Relaxed);
}

#[test]
fn envoy_failing_to_start_reports_its_log() {
    assert_envoy_present();
    // Not a wasm module: Envoy refuses the plugin and exits.
    let dir = std::env::temp_dir().join(format!("streamtap-bogus-wasm-{}", std::process::id()));
    fs::create_dir_all(&dir).unwrap();
    let bogus = dir.join("bogus.wasm");
    fs::write(&bogus, b"this is not wasm").unwrap();
    let opts = EnvoyOptions::new(
        "127.0.0.1:9".parse().unwrap(),
        "127.0.0.1:9".parse().unwrap(),
    )
    .with_wasm_path(&bogus);
    let t0 = Instant::now();
    let err = Envoy::start(&opts).unwrap_err();
    let _ = fs::remove_dir_all(&dir);
    assert!(
        t0.elapsed() < Duration::from_secs(20),
        "took {:?}",
        t0.elapsed()
    );
    assert!(err.contains("Envoy exited"), "{err}");
    assert!(err.contains("[critical]"), "{err}");
    assert!(err.contains("Unable to create Wasm"), "{err}");
}

/// A streaming chat completion through `envoy`, with usage in the last chunk:
/// what the upstream sent and what the client got.
fn stream_through(
    envoy: &Envoy,
    upstream: &testbed::upstream::MockUpstream,
    test_id: &str,
) -> (testbed::upstream::SentStream, testbed::client::StreamResult) {
    let body = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Count to ten"}]}"#;
    let got = testbed::client::post(
        envoy.listener,
        "/v1/chat/completions",
        &[
            ("x-test-id", test_id),
            ("x-mock-tokens", "10"),
            ("x-mock-interval-ms", "5"),
        ],
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("request through envoy failed: {e}\n{}", envoy.log()));
    let sent = upstream
        .wait_sent(test_id, Duration::from_secs(10))
        .unwrap_or_else(|| panic!("upstream has no record of {test_id}"));
    (sent, got)
}

#[test]
fn real_envoy_with_the_empty_wasm_filter_streams_and_posts_chunk_counts() {
    assert_envoy_present();
    assert!(
        empty_filter_wasm_path().is_file(),
        "{} missing (run `make bench-filters`)",
        empty_filter_wasm_path().display()
    );
    let upstream = testbed::upstream::MockUpstream::start().unwrap();
    let collector = testbed::collector::Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_filter(FilterVariant::EmptyWasm)
        .with_wasm_path("/nonexistent/streamtap.wasm");
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let (sent, got) = stream_through(&envoy, &upstream, "empty-wasm-1");
    assert_eq!(got.status, 200);
    assert_eq!(got.header("content-type"), Some("text/event-stream"));
    assert!(sent.complete && sent.events.len() >= 12);
    assert!(got.body == sent.body, "bytes changed on the way");
    // on_log queued the call's record and the root's tick POSTed it.
    let calls = collector.wait_for_calls(1, Duration::from_secs(5));
    let chunks = calls
        .first()
        .and_then(|c| c["chunks"].as_u64())
        .unwrap_or_else(|| panic!("collector got {calls:?}\n{}", envoy.log()));
    assert!(
        chunks >= 1 && chunks as usize <= sent.body.len() + 1,
        "chunks={chunks}"
    );
    assert_eq!(calls.len(), 1, "{calls:?}");
    // Without read_body it never copies a byte in.
    assert_eq!(calls[0]["bytes"], 0, "{calls:?}");
    let config = fs::read_to_string(&envoy.config_path).unwrap();
    assert!(config.contains("empty-filter.wasm"));
    assert!(!envoy.log().contains("][critical]["), "{}", envoy.log());
}

/// One call through the bench's near-empty filter in `variant` (its bytes
/// unchanged), and the records its root POSTed.
fn one_call_through_empty_filter(
    variant: FilterVariant,
) -> (Envoy, testbed::upstream::SentStream, Vec<serde_json::Value>) {
    assert_envoy_present();
    let upstream = testbed::upstream::MockUpstream::start().unwrap();
    let collector = testbed::collector::Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_filter(variant)
        .with_wasm_path("/nonexistent/streamtap.wasm");
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let (sent, got) = stream_through(&envoy, &upstream, &format!("empty-wasm-{variant:?}"));
    assert!(got.body == sent.body, "bytes changed on the way");
    let calls = collector.wait_for_calls(1, Duration::from_secs(5));
    (envoy, sent, calls)
}

/// The body-reading floor of `make bench`: the same filter copying every
/// chunk into the VM; its record counts the bytes it read.
#[test]
fn the_empty_filter_with_read_body_copies_every_byte_in() {
    let (_envoy, sent, calls) = one_call_through_empty_filter(FilterVariant::ReadingWasm);
    assert_eq!(
        calls.first().map(|c| c["bytes"].clone()),
        Some(serde_json::json!(sent.body.len())),
        "{calls:?}"
    );
}

/// The host-call pricing of `make bench`: the reading filter plus so many
/// header reads and counter increments per call; both are really made.
#[test]
fn the_empty_filter_makes_the_host_calls_it_is_asked_for() {
    let (envoy, sent, calls) = one_call_through_empty_filter(FilterVariant::HostCallsWasm {
        header_reads: 3,
        counter_adds: 7,
    });
    // Each read copied ":path" in (/v1/chat/completions, 20 bytes).
    assert_eq!(
        calls.first().map(|c| c["bytes"].clone()),
        Some(serde_json::json!(sent.body.len() + 3 * 20)),
        "{calls:?}"
    );
    assert_eq!(envoy.stat("wasmcustom.empty_filter.adds"), 7);
}

#[test]
fn real_envoy_with_sse_to_metadata_streams_and_extracts_usage_and_model() {
    assert_envoy_present();
    let upstream = testbed::upstream::MockUpstream::start().unwrap();
    // Print what the filter wrote, next to the template's own fields.
    let ns = SSE_TO_METADATA_NAMESPACE;
    let summary_field = "summary=%FILTER_STATE(wasm.streamtap.summary:PLAIN)%";
    let t = fs::read_to_string(template_path()).unwrap();
    assert!(t.contains(summary_field));
    let t = t.replace(
        summary_field,
        &format!(
            "{summary_field} sse_tokens=%DYNAMIC_METADATA({ns}:completion_tokens)% \
             sse_model=%DYNAMIC_METADATA({ns}:model)%"
        ),
    );
    let opts = EnvoyOptions::new(upstream.addr, "127.0.0.1:9".parse().unwrap())
        .with_filter(FilterVariant::SseToMetadata);
    let envoy = Envoy::start_with_template(&opts, &t).unwrap_or_else(|e| panic!("{e}"));
    for i in 0..2 {
        let (sent, got) = stream_through(&envoy, &upstream, &format!("sse-to-metadata-{i}"));
        assert_eq!(got.status, 200);
        assert_eq!(got.header("content-type"), Some("text/event-stream"));
        assert!(sent.complete && sent.events.len() >= 12);
        assert_eq!(sent.completion_tokens, 10);
        assert!(got.body == sent.body, "bytes changed on the way");
    }
    // Two values per call: the usage and the model.
    assert_eq!(
        envoy.wait_for_stat(SSE_TO_METADATA_ADDED_STAT, 4, Duration::from_secs(5)),
        4,
        "{:?}",
        envoy.stats().map(|s| s
            .into_iter()
            .filter(|(k, _)| k.starts_with("sse_to_metadata"))
            .collect::<Vec<_>>())
    );
    // And the values are the stream's: on both calls' access log lines.
    let extracted = "sse_tokens=10 sse_model=gpt-4o-mini";
    assert!(
        eventually(Duration::from_secs(5), || {
            (envoy.access_log().matches(extracted).count() == 2).then_some(())
        })
        .is_some(),
        "{}",
        envoy.access_log()
    );
}
