//! Config pushes with streams in flight (issue 14): Envoy serves its listener
//! from a watched file (`testbed::envoy::lds`), and the test replaces it
//! while streams run — once with a changed plugin config (same code: the VM
//! stays and gets a new root context), once with a new `.wasm` build (a new
//! VM). Every stream must complete byte for byte, every call be summarized
//! exactly once, and the calls after a push run under its config. A push
//! during a collector outage hands what the old config held to the new one;
//! a push Envoy refuses (a bad field, a missing `.wasm`) changes nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;
use support::eventually;
use testbed::client;
use testbed::collector::Collector;
use testbed::envoy::{lds, Envoy, EnvoyOptions};
use testbed::upstream::MockUpstream;

/// A slow flush, so summaries are still queued in the old root when the push lands.
const BEFORE: &str =
    r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":1000,"timeout_ms":1000}}"#;
/// The pushed config: content capped at 16 bytes, visible in every summary it makes.
const AFTER: &str = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100,"timeout_ms":1000},"capture":{"max_content_bytes":16}}"#;

/// The same `.wasm` with a custom section appended: other bytes (a new build
/// id, so Envoy starts a new VM), the same code.
fn rebuilt_wasm(dir: &std::path::Path) -> std::path::PathBuf {
    let mut bytes = std::fs::read(testbed::envoy::default_wasm_path()).unwrap();
    let name = b"streamtap-test-build";
    let payload = b"2";
    bytes.push(0);
    bytes.push((1 + name.len() + payload.len()) as u8);
    bytes.push(name.len() as u8);
    bytes.extend_from_slice(name);
    bytes.extend_from_slice(payload);
    let path = dir.join("streamtap-rebuilt.wasm");
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Every call's summaries by request id, once all `expected` have arrived.
fn summaries_by_id(collector: &Collector, expected: usize) -> BTreeMap<String, Vec<Value>> {
    let group = || {
        let mut by_id: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for s in collector.calls() {
            by_id
                .entry(s["id"].as_str().unwrap_or_default().to_string())
                .or_default()
                .push(s);
        }
        by_id
    };
    eventually(Duration::from_secs(20), || {
        let by_id = group();
        (by_id.len() >= expected).then_some(by_id)
    })
    .unwrap_or_else(|| panic!("only {} of {expected} calls summarized", group().len()))
}

#[test]
fn pushes_mid_stream_lose_no_byte_and_no_summary() {
    pushes_with_workers(1);
}

#[test]
fn pushes_with_two_workers_lose_nothing_either() {
    pushes_with_workers(2);
}

fn pushes_with_workers(workers: u32) {
    let upstream = MockUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(BEFORE)
        .with_concurrency(workers)
        .with_listeners_from_file();
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let scratch = testbed::scratch::make_dir("push-wasm").unwrap();
    let rebuilt = rebuilt_wasm(&scratch);

    // 50 streams, then a config push (same code) while they run; 10 more
    // after it, then a push of a new build while those run; 10 more after.
    let mut before: Vec<_> = (0..50)
        .map(|i| support::stream_in_background(&envoy, format!("before-{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let config_push = envoy.push_listeners("2", |listeners| {
        for listener in listeners.iter_mut() {
            for value in lds::plugin_configs(listener) {
                *value = Value::String(AFTER.to_string());
            }
        }
    });
    assert_eq!(config_push, Ok(true), "{}", envoy.log());
    let mut between: Vec<_> = (0..10)
        .map(|i| support::stream_in_background(&envoy, format!("between-{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let wasm_path = rebuilt.display().to_string();
    let build_push = envoy.push_listeners("3", |listeners| {
        // Panics unless the listener names the default build.
        lds::replace_wasm_path(listeners, &testbed::envoy::default_wasm_path(), &wasm_path)
            .unwrap();
    });
    assert_eq!(build_push, Ok(true), "{}", envoy.log());
    let after: Vec<_> = (0..10)
        .map(|i| support::stream_in_background(&envoy, format!("after-{i}")))
        .collect();

    let mut request_ids: BTreeMap<String, String> = BTreeMap::new();
    for handle in before.drain(..).chain(between.drain(..)).chain(after) {
        let (test_id, got) = handle.join().unwrap();
        let sent = upstream
            .wait_sent(&test_id, Duration::from_secs(10))
            .unwrap();
        assert!(got.complete && sent.complete, "{test_id} did not complete");
        assert_eq!(
            got.body, sent.body,
            "{test_id}: the client got other bytes than were sent"
        );
        let id = support::header(&sent, "x-request-id").unwrap();
        request_ids.insert(id, test_id);
    }
    assert_eq!(request_ids.len(), 70);

    let by_id = summaries_by_id(&collector, 70);
    for (id, test_id) in &request_ids {
        let summaries = by_id
            .get(id)
            .unwrap_or_else(|| panic!("{test_id} ({id}) not summarized"));
        assert_eq!(
            summaries.len(),
            1,
            "{test_id} summarized {} times",
            summaries.len()
        );
        let s = &summaries[0];
        assert_eq!(s["outcome"], "completed", "{test_id}: {s}");
        // A stream keeps the config it started under; later ones get the push's.
        let under_first_config = test_id.starts_with("before-");
        assert_eq!(
            s["content_truncated"], !under_first_config,
            "{test_id}: {s}"
        );
    }
    // Nothing else reached the collector (no summary of a call not made),
    // and nothing was sent twice.
    assert_eq!(by_id.len(), 70);
    assert_eq!(collector.duplicates(), 0);
    eprintln!(
        "{workers} worker(s): 70 calls, {} summaries, {} duplicates, {} dropped",
        collector.calls().len(),
        collector.duplicates(),
        envoy.stat("wasmcustom.streamtap.summaries_dropped")
    );
    testbed::scratch::remove_dir(&scratch, "push-wasm");
}

/// A quick streamed call under `test_id`; returns its `x-request-id`.
fn quick_call(envoy: &Envoy, upstream: &MockUpstream, test_id: &str) -> String {
    let headers = [
        ("x-test-id", test_id),
        ("x-mock-tokens", "3"),
        ("x-mock-interval-ms", "0"),
    ];
    let body = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
    let got = client::post(envoy.listener, "/v1/chat/completions", &headers, body).unwrap();
    let sent = upstream
        .wait_sent(test_id, Duration::from_secs(10))
        .unwrap();
    assert_eq!(got.body, sent.body, "{test_id}");
    support::header(&sent, "x-request-id").unwrap()
}

/// Longer than `--drain-time-s 1`: the old listener and its roots are gone.
const RETIRED: Duration = Duration::from_millis(2500);

/// How many times `needle` is in Envoy's log.
fn log_count(envoy: &Envoy, needle: &str) -> usize {
    envoy.log().matches(needle).count()
}

#[test]
fn a_collector_outage_during_pushes_loses_nothing() {
    outage_with_workers(1);
}

#[test]
fn a_collector_outage_during_pushes_with_two_workers_loses_nothing() {
    outage_with_workers(2);
}

/// The collector is down while the config changes twice (same code, then a
/// new build). `--drain-time-s 1` retires each old config while it is still
/// down: what its roots held goes through the handoff queue to the new ones,
/// and all of it arrives, once, when the collector is back.
fn outage_with_workers(workers: u32) {
    let dead = support::dead_address();
    let upstream = MockUpstream::start().unwrap();
    let first = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100,"timeout_ms":500}}"#;
    let opts = EnvoyOptions::new(upstream.addr, dead)
        .with_plugin_config(first)
        .with_concurrency(workers)
        .with_listeners_from_file()
        .with_extra_args(["--drain-time-s", "1"]);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let scratch = testbed::scratch::make_dir("outage-wasm").unwrap();
    let rebuilt = rebuilt_wasm(&scratch);

    let mut ids: Vec<String> = (0..10)
        .map(|i| quick_call(&envoy, &upstream, &format!("outage-a-{workers}-{i}")))
        .collect();
    assert!(
        envoy.wait_for_stat(
            "wasmcustom.streamtap.export_failures",
            1,
            Duration::from_secs(5)
        ) >= 1
    );
    let second = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100,"timeout_ms":500},"capture":{"max_content_bytes":16}}"#;
    let pushed = envoy.push_listeners("2", |listeners| {
        for listener in listeners.iter_mut() {
            for value in lds::plugin_configs(listener) {
                *value = Value::String(second.to_string());
            }
        }
    });
    assert_eq!(pushed, Ok(true), "{}", envoy.log());
    // The old config's roots stop once the old listener has drained (1 s).
    std::thread::sleep(RETIRED);
    ids.extend((0..5).map(|i| quick_call(&envoy, &upstream, &format!("outage-b-{workers}-{i}"))));

    let wasm_path = rebuilt.display().to_string();
    let pushed = envoy.push_listeners("3", |listeners| {
        lds::replace_wasm_path(listeners, &testbed::envoy::default_wasm_path(), &wasm_path)
            .unwrap();
    });
    assert_eq!(pushed, Ok(true), "{}", envoy.log());
    std::thread::sleep(RETIRED);
    ids.extend((0..5).map(|i| quick_call(&envoy, &upstream, &format!("outage-c-{workers}-{i}"))));
    std::thread::sleep(Duration::from_millis(300));

    let collector = Collector::start_on(dead).unwrap();
    let by_id = summaries_by_id(&collector, ids.len());
    for id in &ids {
        assert_eq!(by_id.get(id).map(Vec::len), Some(1), "{id}");
    }
    assert_eq!(by_id.len(), ids.len());
    assert_eq!(collector.duplicates(), 0);
    let log = envoy.log();
    // It went through the handoff: old roots stopped holding summaries, and
    // new ones took them over.
    assert!(
        log.contains(" handed to the next streamtap configuration"),
        "{log}"
    );
    assert!(log.contains("streamtap: took over "), "{log}");
    let dropped = envoy.stat("wasmcustom.streamtap.summaries_dropped");
    assert_eq!(dropped, 0, "{log}");
    eprintln!(
        "outage, {workers} worker(s): {} calls, {} delivered, {} duplicates, {dropped} dropped; {} stop lines, {} take-overs",
        ids.len(),
        collector.calls().len(),
        collector.duplicates(),
        log_count(&envoy, "streamtap: stopped: "),
        log_count(&envoy, "streamtap: took over ")
    );
    for line in log
        .lines()
        .filter(|l| l.contains("streamtap: st") || l.contains("took over"))
    {
        eprintln!("  {}", line.split("streamtap: ").last().unwrap_or(line));
    }
    testbed::scratch::remove_dir(&scratch, "outage-wasm");
}

#[test]
fn a_refused_push_leaves_the_running_filter_and_loses_nothing() {
    let upstream = MockUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(AFTER)
        .with_listeners_from_file();
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let running: Vec<_> = (0..5)
        .map(|i| support::stream_in_background(&envoy, format!("running-{i}")))
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let bad = r#"{"collector":{"cluster":"streamtap_collector"},"bogus_field":1}"#;
    let push = envoy.push_listeners("2", |listeners| {
        for listener in listeners.iter_mut() {
            for value in lds::plugin_configs(listener) {
                *value = Value::String(bad.to_string());
            }
        }
    });
    assert_eq!(push, Ok(false), "the refused config was taken");
    assert!(
        envoy.wait_for_log("bogus_field", Duration::from_secs(5)),
        "the log does not name the field:\n{}",
        envoy.log()
    );
    // A listener naming a .wasm that is not there is refused too.
    let missing = "/nonexistent/streamtap-missing.wasm";
    let push = envoy.push_listeners("3", |listeners| {
        lds::replace_wasm_path(listeners, &testbed::envoy::default_wasm_path(), missing).unwrap();
    });
    assert_eq!(push, Ok(false), "a listener without its .wasm was taken");
    assert!(
        envoy.wait_for_log(missing, Duration::from_secs(5)),
        "the log does not name the missing file:\n{}",
        envoy.log()
    );
    assert_eq!(envoy.stat("listener_manager.lds.update_rejected"), 2);
    for line in envoy.log().lines() {
        if line.contains("bogus_field") || line.contains(missing) {
            eprintln!("  {line}");
        }
    }
    let later: Vec<_> = (0..5)
        .map(|i| support::stream_in_background(&envoy, format!("later-{i}")))
        .collect();
    let mut ids = Vec::new();
    for handle in running.into_iter().chain(later) {
        let (test_id, got) = handle.join().unwrap();
        let sent = upstream
            .wait_sent(&test_id, Duration::from_secs(10))
            .unwrap();
        assert_eq!(got.body, sent.body, "{test_id}");
        ids.push(support::header(&sent, "x-request-id").unwrap());
    }
    let by_id = summaries_by_id(&collector, 10);
    for id in &ids {
        assert_eq!(by_id.get(id).map(Vec::len), Some(1), "{id}");
        // Still the running config: content capped at 16 bytes.
        assert_eq!(by_id[id][0]["content_truncated"], true);
    }
    assert_eq!(collector.duplicates(), 0);
    assert_eq!(envoy.stat("wasmcustom.streamtap.summaries_dropped"), 0);
}

/// `max_label_values` bounds the process, not a root or a VM: values taken
/// before a push count after it, for a new root (same code) and a new VM.
#[test]
fn the_model_label_bound_holds_across_pushes() {
    let config = |cap: u32| {
        format!(
            r#"{{"collector":{{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000}},"max_label_values":2,"capture":{{"max_content_bytes":{cap}}}}}"#
        )
    };
    let upstream = MockUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(&config(1000))
        .with_listeners_from_file();
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    let scratch = testbed::scratch::make_dir("labels-wasm").unwrap();
    let rebuilt = rebuilt_wasm(&scratch);
    let call = |model: &str| {
        let test_id = format!("labels-{model}");
        let headers = [
            ("x-test-id", test_id.as_str()),
            ("x-mock-tokens", "2"),
            ("x-mock-interval-ms", "0"),
        ];
        let body = format!(r#"{{"model":"{model}","stream":true,"messages":[]}}"#);
        client::post(
            envoy.listener,
            "/v1/chat/completions",
            &headers,
            body.as_bytes(),
        )
        .unwrap();
    };
    call("model-0");
    call("model-1");
    let pushed = envoy.push_listeners("2", |listeners| {
        for listener in listeners.iter_mut() {
            for value in lds::plugin_configs(listener) {
                *value = Value::String(config(4));
            }
        }
    });
    assert_eq!(pushed, Ok(true), "{}", envoy.log());
    call("model-2");
    let wasm_path = rebuilt.display().to_string();
    let pushed = envoy.push_listeners("3", |listeners| {
        lds::replace_wasm_path(listeners, &testbed::envoy::default_wasm_path(), &wasm_path)
            .unwrap();
    });
    assert_eq!(pushed, Ok(true), "{}", envoy.log());
    call("model-3");
    let summaries = collector.wait_for_calls(4, Duration::from_secs(10));
    assert_eq!(summaries.len(), 4);
    // The later calls ran under the pushed config (content capped).
    let truncated = summaries
        .iter()
        .filter(|s| s["content_truncated"] == true)
        .count();
    assert_eq!(truncated, 2, "{summaries:?}");

    let (_, text) = envoy.admin_get("/stats/prometheus").unwrap();
    let kept: std::collections::BTreeSet<String> =
        support::prometheus::series(&text, "streamtap_gen_ai_calls")
            .into_iter()
            .map(|(labels, _)| labels["gen_ai_request_model"].clone())
            .collect();
    let expected: std::collections::BTreeSet<String> = ["model-0", "model-1", "other"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(kept, expected, "{text}");
    let overflow = envoy.stat("wasmcustom.streamtap.label_overflow");
    assert_eq!(overflow, 2, "{text}");
    testbed::scratch::remove_dir(&scratch, "labels-wasm");
}

/// A root retired by a push sends everything it holds before it goes: its
/// `on_done` sends batch after batch (the collector slow, the flush interval
/// long), and only then tells Envoy it is done.
#[test]
fn a_retired_root_sends_its_backlog_batch_by_batch_before_it_goes() {
    let held = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":60000,"timeout_ms":1000,"batch_size":5}}"#;
    let upstream = MockUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    // Slow, but within timeout_ms: one batch a 0.9 s.
    collector.set_delay(Duration::from_millis(900));
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(held)
        .with_listeners_from_file()
        .with_extra_args(["--drain-time-s", "1"]);
    let envoy = Envoy::start(&opts).unwrap_or_else(|e| panic!("{e}"));
    // The first full batch goes out at once; the rest wait behind it (one
    // POST in flight at a time), so the root still holds two batches and
    // more when the drain (1 s) retires it.
    let ids: Vec<String> = (0..18)
        .map(|i| quick_call(&envoy, &upstream, &format!("retired-{i}")))
        .collect();
    let pushed = envoy.push_listeners("2", |listeners| {
        for listener in listeners.iter_mut() {
            for value in lds::plugin_configs(listener) {
                *value = Value::String(AFTER.to_string());
            }
        }
    });
    assert_eq!(pushed, Ok(true), "{}", envoy.log());
    let by_id = summaries_by_id(&collector, ids.len());
    for id in &ids {
        assert_eq!(by_id.get(id).map(Vec::len), Some(1), "{id}");
    }
    assert!(
        envoy.wait_for_log("streamtap: stopped: ", Duration::from_secs(10)),
        "{}",
        envoy.log()
    );
    let log = envoy.log();
    let stop = log
        .lines()
        .find(|l| l.contains("streamtap: stopped: "))
        .unwrap_or_default();
    eprintln!("  {}", stop.split("streamtap: ").last().unwrap_or(stop));
    // "stopped: N of the N summaries sent, 0 handed ...", N more than a batch.
    let numbers: Vec<usize> = stop
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    let tail = &numbers[numbers.len() - 4..];
    assert!(tail[0] == tail[1] && tail[1] > 5, "{stop}");
    assert_eq!(&tail[2..], [0, 0], "{stop}");
    assert_eq!(collector.duplicates(), 0);
    assert_eq!(envoy.stat("wasmcustom.streamtap.summaries_dropped"), 0);
}
