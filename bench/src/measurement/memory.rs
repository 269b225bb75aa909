//! Memory per open stream, on fresh Envoys: streams opened, then held open
//! and idle, for a short and a 10× longer response.

use std::thread;
use std::time::{Duration, Instant};

use crate::loadgen;
use serde::Serialize;
use serde_json::Value;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions, FilterVariant, DEFAULT_PLUGIN_CONFIG};
use testbed::procfs;
use testbed::upstream::MockUpstream;

use crate::settings::*;
use crate::workload::{self, check_errors};

/// `memory` in `latest.json`: one run per set-up, then what they mean together.
#[derive(Clone, Debug, Serialize)]
pub struct MemoryReport {
    pub plain_envoy: IdleMemory,
    pub empty_wasm: IdleMemory,
    pub streamtap: IdleMemory,
    pub streamtap_capped: IdleMemory,
    pub streamtap_extra_over_plain_per_stream_bytes: Option<f64>,
    pub plain_envoy_growth_per_stream_bytes: Option<f64>,
    pub empty_wasm_growth_beyond_plain_per_stream_bytes: Option<f64>,
    pub default_growth_beyond_plain_per_stream_bytes: Option<f64>,
    pub default_content_growth_bytes: f64,
    pub capped_growth_per_stream_bytes: Option<f64>,
}

/// One Envoy: nothing open, then the short set, then the long set as well.
#[derive(Clone, Debug, Serialize)]
pub struct IdleMemory {
    pub streams_per_set: usize,
    pub no_stream: MemSample,
    pub short: Option<Step>,
    pub long: Option<Step>,
    pub short_per_stream_bytes: Option<f64>,
    pub long_per_stream_bytes: Option<f64>,
    pub growth_per_stream_bytes: Option<f64>,
    pub short_per_stream_rss_bytes: Option<f64>,
    pub long_per_stream_rss_bytes: Option<f64>,
    pub growth_per_stream_rss_bytes: Option<f64>,
    pub active_requests_seen: u64,
}

/// Opening one set of streams.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Step {
    pub events_before_idle: usize,
    pub before: MemSample,
    pub after: MemSample,
    pub per_stream_bytes: f64,
    pub per_stream_heap_bytes: f64,
    pub per_stream_wasm_bytes: f64,
    pub per_stream_rss_bytes: f64,
    pub open_seconds: f64,
}

/// Envoy's memory: resident, its heap in use (tcmalloc, admin `/memory`), and
/// the resident part of its Wasm VMs' linear memories.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct MemSample {
    #[serde(rename = "rss_bytes")]
    pub rss: u64,
    #[serde(rename = "heap_allocated_bytes")]
    pub heap: u64,
    #[serde(rename = "wasm_memory_rss_bytes")]
    pub wasm: u64,
}

pub fn memory_runs(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
) -> Result<MemoryReport, String> {
    let capped = format!(
        r#"{{"collector":{{"cluster":"streamtap_collector","flush_interval_ms":100}},"capture":{{"max_content_bytes":{IDLE_CAPPED_CONTENT_BYTES},"timeline":true,"timeline_max_entries":{IDLE_TIMELINE_ENTRIES}}}}}"#
    );
    let run = |key: &str, filter: FilterVariant, config: &str| -> Result<IdleMemory, String> {
        let m = idle_memory(rt, upstream, filter, config)?;
        let b = |v: Option<f64>| v.unwrap_or(f64::NAN);
        println!(
            "  {key:<18} {IDLE_SHORT_EVENTS:>3} events then idle: {:>6.0} bytes/stream; {IDLE_LONG_EVENTS} events: {:>6.0} (heap + wasm memory; by RSS {:.0} and {:.0})",
            b(m.short_per_stream_bytes),
            b(m.long_per_stream_bytes),
            b(m.short_per_stream_rss_bytes),
            b(m.long_per_stream_rss_bytes),
        );
        Ok(m)
    };
    let plain_envoy = run(
        "plain_envoy",
        FilterVariant::NoFilter,
        DEFAULT_PLUGIN_CONFIG,
    )?;
    let empty_wasm = run(
        "empty_wasm",
        FilterVariant::EmptyWasm,
        DEFAULT_PLUGIN_CONFIG,
    )?;
    let streamtap = run("streamtap", FilterVariant::Streamtap, DEFAULT_PLUGIN_CONFIG)?;
    let streamtap_capped = run("streamtap_capped", FilterVariant::Streamtap, &capped)?;
    let content = |tokens: usize| -> f64 {
        (0..tokens).map(|i| format!("tok{i} ").len()).sum::<usize>() as f64
    };
    // Envoy's own per-stream memory grows with a longer first burst (its
    // buffers); streamtap's share is what it adds beyond plain Envoy's growth.
    let plain_growth = plain_envoy.growth_per_stream_bytes;
    let report = MemoryReport {
        streamtap_extra_over_plain_per_stream_bytes: opt_sub(
            streamtap.short_per_stream_bytes,
            plain_envoy.short_per_stream_bytes,
        ),
        plain_envoy_growth_per_stream_bytes: plain_growth,
        empty_wasm_growth_beyond_plain_per_stream_bytes: opt_sub(
            empty_wasm.growth_per_stream_bytes,
            plain_growth,
        ),
        default_growth_beyond_plain_per_stream_bytes: opt_sub(
            streamtap.growth_per_stream_bytes,
            plain_growth,
        ),
        default_content_growth_bytes: content(IDLE_LONG_EVENTS - 1)
            - content(IDLE_SHORT_EVENTS - 1),
        capped_growth_per_stream_bytes: opt_sub(
            streamtap_capped.growth_per_stream_bytes,
            plain_growth,
        ),
        plain_envoy,
        empty_wasm,
        streamtap,
        streamtap_capped,
    };
    let b = |v: Option<f64>| v.unwrap_or(f64::NAN);
    println!(
        "  10x longer response: plain Envoy {:+.0} bytes/stream; beyond that: near-empty wasm {:+.0}, streamtap {:+.0} bytes/stream with the default content cap (content {:+.0} bytes), {:+.0} bytes/stream with content capped at {IDLE_CAPPED_CONTENT_BYTES} bytes and the timeline on ({IDLE_TIMELINE_ENTRIES} entries)\n",
        b(report.plain_envoy_growth_per_stream_bytes),
        b(report.empty_wasm_growth_beyond_plain_per_stream_bytes),
        b(report.default_growth_beyond_plain_per_stream_bytes),
        report.default_content_growth_bytes,
        b(report.capped_growth_per_stream_bytes),
    );
    Ok(report)
}

/// Idle-stream memory on a fresh Envoy: with no stream open, after opening
/// [`IDLE_STREAMS`] streams that passed [`IDLE_SHORT_EVENTS`] events, and
/// after opening as many more that passed 10× as many (the first set still
/// open). Per stream: the step of a set divided by its size.
fn idle_memory(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    filter: FilterVariant,
    plugin_config: &str,
) -> Result<IdleMemory, String> {
    let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
    let envoy = Envoy::start(
        &EnvoyOptions::new(upstream.addr, collector.addr)
            .with_filter(filter)
            .with_plugin_config(plugin_config),
    )?;
    let pid = envoy.pid().ok_or("no Envoy pid")?;
    // Warm-up: the VM, pools and allocator have seen traffic of both shapes.
    for events in [IDLE_SHORT_EVENTS, IDLE_LONG_EVENTS] {
        let warm = rt.block_on(loadgen::run(&workload::idle_warmup(envoy.listener, events)));
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
        let before = sample()?;
        let t = Instant::now();
        held.extend(rt.block_on(loadgen::open_streams(
            envoy.listener,
            IDLE_STREAMS,
            &workload::idle_stream(events),
            events,
        ))?);
        let opened_in = t.elapsed();
        thread::sleep(Duration::from_millis(500));
        steps.push(Step::between(events, before, sample()?, opened_in));
    }
    let active = envoy.stat("http.ingress_http.downstream_rq_active");
    drop(held);
    drop(envoy);
    let (short, long) = (steps.first().copied(), steps.get(1).copied());
    let per = |s: Option<Step>| s.map(|s| s.per_stream_bytes);
    let rss = |s: Option<Step>| s.map(|s| s.per_stream_rss_bytes);
    Ok(IdleMemory {
        streams_per_set: IDLE_STREAMS,
        no_stream: none,
        short,
        long,
        short_per_stream_bytes: per(short),
        long_per_stream_bytes: per(long),
        growth_per_stream_bytes: opt_sub(per(long), per(short)),
        short_per_stream_rss_bytes: rss(short),
        long_per_stream_rss_bytes: rss(long),
        growth_per_stream_rss_bytes: opt_sub(rss(long), rss(short)),
        active_requests_seen: active,
    })
}

impl Step {
    fn between(events: usize, before: MemSample, after: MemSample, opened_in: Duration) -> Step {
        let per = |a: u64, b: u64| (a as f64 - b as f64) / IDLE_STREAMS as f64;
        Step {
            events_before_idle: events,
            before,
            after,
            per_stream_bytes: per(after.heap + after.wasm, before.heap + before.wasm),
            per_stream_heap_bytes: per(after.heap, before.heap),
            per_stream_wasm_bytes: per(after.wasm, before.wasm),
            per_stream_rss_bytes: per(after.rss, before.rss),
            open_seconds: opened_in.as_secs_f64(),
        }
    }
}

/// `allocated` of Envoy's admin `/memory` (bytes in use on its heap).
fn envoy_heap_allocated(envoy: &Envoy) -> Option<u64> {
    let (code, body) = envoy.admin_get("/memory").ok()?;
    if code != 200 {
        return None;
    }
    parse_memory_allocated(&body)
}

fn parse_memory_allocated(body: &str) -> Option<u64> {
    let v: Value = serde_json::from_str(body).ok()?;
    match &v["allocated"] {
        Value::String(s) => s.parse().ok(),
        other => other.as_u64(),
    }
}

fn opt_sub(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_allocated_is_read_from_the_admin_json() {
        let body =
            r#"{"allocated": "12345678", "heap_size": "20000000", "pageheap_unmapped": "0"}"#;
        assert_eq!(parse_memory_allocated(body), Some(12_345_678));
        assert_eq!(parse_memory_allocated(r#"{"allocated": 42}"#), Some(42));
        assert_eq!(parse_memory_allocated("not json"), None);
    }
}
