//! Memory per open stream: idle streams held open through streamtap, heap and RSS before and after.

use crate::*;

/// Idle-stream memory on a fresh Envoy: RSS with no stream open, after
/// opening [`IDLE_STREAMS`] streams that passed [`IDLE_SHORT_EVENTS`] events,
/// and after opening as many more that passed 10× as many (the first set
/// still open). Per stream: the RSS step of a set divided by its size.
pub(crate) fn idle_memory(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    filter: FilterVariant,
    plugin_config: &str,
) -> Result<Value, String> {
    let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
    let envoy = Envoy::start(
        &EnvoyOptions::new(upstream.addr, collector.addr)
            .with_filter(filter)
            .with_plugin_config(plugin_config),
    )?;
    let pid = envoy.pid().ok_or("no Envoy pid")?;
    // Warm-up: the VM, pools and allocator have seen traffic of both shapes.
    for events in [IDLE_SHORT_EVENTS, IDLE_LONG_EVENTS] {
        let warm = rt.block_on(loadgen::run(&Workload {
            target: envoy.listener,
            connections: 8,
            shape: CallShape::with_events(events, 0),
            stop: Stop::CallsPerConnection(3),
            record: false,
            stagger: Duration::ZERO,
        }));
        check_errors("idle streams warm-up", &warm)?;
    }
    thread::sleep(Duration::from_millis(700));
    let sample = || -> Result<MemSample, String> {
        Ok(MemSample {
            rss: procfs::process_rss(pid).ok_or("no Envoy RSS")?,
            heap: envoy_heap_allocated(&envoy).ok_or("no Envoy /memory")?,
            wasm: procfs::wasm_memory_rss(pid).unwrap_or(0),
        })
    };
    let none = sample()?;
    let mut held = Vec::new();
    let mut steps = Vec::new();
    for events in [IDLE_SHORT_EVENTS, IDLE_LONG_EVENTS] {
        // One event per write, paced, so Envoy sees the same chunks in both
        // sets; then the stream idles, open.
        let shape = CallShape {
            tokens: 2 * IDLE_LONG_EVENTS,
            idle_after: Some(events),
            ..CallShape::with_events(0, IDLE_INTERVAL_MS)
        };
        let before = sample()?;
        let t = Instant::now();
        held.extend(rt.block_on(loadgen::open_streams(
            envoy.listener,
            IDLE_STREAMS,
            &shape,
            events,
        ))?);
        let opened_in = t.elapsed();
        thread::sleep(Duration::from_millis(500));
        let after = sample()?;
        let per = |a: u64, b: u64| (a as f64 - b as f64) / IDLE_STREAMS as f64;
        steps.push(json!({
            "events_before_idle": events,
            "before": before.to_json(),
            "after": after.to_json(),
            "per_stream_bytes": per(after.heap + after.wasm, before.heap + before.wasm),
            "per_stream_heap_bytes": per(after.heap, before.heap),
            "per_stream_wasm_bytes": per(after.wasm, before.wasm),
            "per_stream_rss_bytes": per(after.rss, before.rss),
            "open_seconds": opened_in.as_secs_f64(),
        }));
    }
    let active = envoy.stat("http.ingress_http.downstream_rq_active");
    drop(held);
    drop(envoy);
    let per = |i: usize, k: &str| steps.get(i).and_then(|s| s[k].as_f64());
    Ok(json!({
        "streams_per_set": IDLE_STREAMS,
        "no_stream": none.to_json(),
        "short": steps.first(),
        "long": steps.get(1),
        "short_per_stream_bytes": per(0, "per_stream_bytes"),
        "long_per_stream_bytes": per(1, "per_stream_bytes"),
        "growth_per_stream_bytes": opt_sub(per(1, "per_stream_bytes"), per(0, "per_stream_bytes")),
        "short_per_stream_rss_bytes": per(0, "per_stream_rss_bytes"),
        "long_per_stream_rss_bytes": per(1, "per_stream_rss_bytes"),
        "growth_per_stream_rss_bytes": opt_sub(per(1, "per_stream_rss_bytes"), per(0, "per_stream_rss_bytes")),
        "active_requests_seen": active,
    }))
}

/// Envoy's memory: resident, its heap in use (tcmalloc, admin `/memory`), and
/// the resident part of its Wasm VMs' linear memories.
#[derive(Clone, Copy, Debug)]
pub(crate) struct MemSample {
    pub(crate) rss: u64,
    pub(crate) heap: u64,
    pub(crate) wasm: u64,
}

impl MemSample {
    pub(crate) fn to_json(self) -> Value {
        json!({"rss_bytes": self.rss, "heap_allocated_bytes": self.heap, "wasm_memory_rss_bytes": self.wasm})
    }
}

/// `allocated` of Envoy's admin `/memory` (bytes in use on its heap).
pub(crate) fn envoy_heap_allocated(envoy: &Envoy) -> Option<u64> {
    let (code, body) = envoy.admin_get("/memory").ok()?;
    if code != 200 {
        return None;
    }
    parse_memory_allocated(&body)
}

pub(crate) fn parse_memory_allocated(body: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(body).ok()?;
    match &v["allocated"] {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

pub(crate) fn memory_runs(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
) -> Result<Value, String> {
    let capped = format!(
        r#"{{"collector":{{"cluster":"streamtap_collector","flush_interval_ms":100}},"capture":{{"max_content_bytes":{IDLE_CAPPED_CONTENT_BYTES}}}}}"#
    );
    let runs: [(&str, FilterVariant, &str); 4] = [
        (
            "plain_envoy",
            FilterVariant::NoFilter,
            DEFAULT_PLUGIN_CONFIG,
        ),
        (
            "empty_wasm",
            FilterVariant::EmptyWasm,
            DEFAULT_PLUGIN_CONFIG,
        ),
        ("streamtap", FilterVariant::Streamtap, DEFAULT_PLUGIN_CONFIG),
        ("streamtap_capped", FilterVariant::Streamtap, &capped),
    ];
    let mut out = Map::new();
    for (key, filter, config) in runs {
        let m = idle_memory(rt, upstream, filter, config)?;
        let b = |k: &str| m[k].as_f64().unwrap_or(f64::NAN);
        println!(
            "  {key:<18} {IDLE_SHORT_EVENTS:>3} events then idle: {:>6.0} bytes/stream; {IDLE_LONG_EVENTS} events: {:>6.0} (heap + wasm memory; by RSS {:.0} and {:.0})",
            b("short_per_stream_bytes"),
            b("long_per_stream_bytes"),
            b("short_per_stream_rss_bytes"),
            b("long_per_stream_rss_bytes"),
        );
        out.insert(key.to_string(), m);
    }
    let get = |k: &str, f: &str| out.get(k).and_then(|m| m[f].as_f64());
    let content = |tokens: usize| -> f64 {
        (0..tokens).map(|i| format!("tok{i} ").len()).sum::<usize>() as f64
    };
    let plain_growth = get("plain_envoy", "growth_per_stream_bytes");
    // Envoy's own per-stream memory grows with a longer first burst (its
    // buffers); streamtap's share is what it adds beyond plain Envoy's growth.
    let summary = json!({
        "streamtap_extra_over_plain_per_stream_bytes": opt_sub(
            get("streamtap", "short_per_stream_bytes"),
            get("plain_envoy", "short_per_stream_bytes")
        ),
        "plain_envoy_growth_per_stream_bytes": plain_growth,
        "empty_wasm_growth_beyond_plain_per_stream_bytes":
            opt_sub(get("empty_wasm", "growth_per_stream_bytes"), plain_growth),
        "default_growth_beyond_plain_per_stream_bytes":
            opt_sub(get("streamtap", "growth_per_stream_bytes"), plain_growth),
        "default_content_growth_bytes":
            content(IDLE_LONG_EVENTS - 1) - content(IDLE_SHORT_EVENTS - 1),
        "capped_growth_per_stream_bytes":
            opt_sub(get("streamtap_capped", "growth_per_stream_bytes"), plain_growth),
    });
    if let Value::Object(s) = summary {
        out.extend(s);
    }
    println!(
        "  10x longer response: plain Envoy {:+.0} bytes/stream; beyond that: near-empty wasm {:+.0}, streamtap {:+.0} bytes/stream with the default content cap (content {:+.0} bytes), {:+.0} bytes/stream with content capped at {IDLE_CAPPED_CONTENT_BYTES} bytes\n",
        out["plain_envoy_growth_per_stream_bytes"].as_f64().unwrap_or(f64::NAN),
        out["empty_wasm_growth_beyond_plain_per_stream_bytes"].as_f64().unwrap_or(f64::NAN),
        out["default_growth_beyond_plain_per_stream_bytes"].as_f64().unwrap_or(f64::NAN),
        out["default_content_growth_bytes"].as_f64().unwrap_or(f64::NAN),
        out["capped_growth_per_stream_bytes"].as_f64().unwrap_or(f64::NAN),
    );
    Ok(Value::Object(out))
}
