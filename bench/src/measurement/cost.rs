//! The cost model's runs ([`crate::cost_model`]): one set-up on a fresh
//! Envoy, an idle window, then the four paced workloads of [`SHAPES`], each
//! with Envoy's CPU over it from `/proc/<pid>/task/*/schedstat` (nanoseconds,
//! not 10 ms ticks).

use std::thread;
use std::time::{Duration, Instant};

use serde::Serialize;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions};
use testbed::procfs;

use super::round::{chunk_counts, Bench};
use crate::cost_model::Sample;
use crate::loadgen::{self, CallShape, Stop, Workload};
use crate::settings::{EXPORT_SETTLE, WARMUP};
use crate::variants::Variant;
use crate::workload::{self, check_errors};

/// One workload of the cost model: calls of `events` SSE events, written
/// `per_write` at a time, `interval_ms` apart, on [`COST_CONNECTIONS`].
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Shape {
    pub name: &'static str,
    pub events: usize,
    pub per_write: usize,
    pub interval_ms: u64,
    pub calls_per_connection: usize,
}

impl Shape {
    /// Body chunks per call at Envoy, as written (paced writes arrive one
    /// per read; streamtap's summaries check it).
    pub fn chunks_per_call(&self) -> usize {
        self.events.div_ceil(self.per_write)
    }
}

/// Paced so that Envoy's worker stays well under saturation (no coalescing):
/// 100 streams, an event every 5 ms (one a write) or ten every 50 ms, ~20 000
/// events/s either way (200 streams kept plain Envoy's worker 86% busy and
/// coalesced 5% of the one-event writes); calls of 20 and 400 events. Calls,
/// events and chunks vary independently across the four; each window ~1.5–2 s.
pub const SHAPES: [Shape; 4] = [
    Shape {
        name: "20 events, 1 per chunk",
        events: 20,
        per_write: 1,
        interval_ms: 5,
        calls_per_connection: 15,
    },
    Shape {
        name: "400 events, 1 per chunk",
        events: 400,
        per_write: 1,
        interval_ms: 5,
        calls_per_connection: 1,
    },
    Shape {
        name: "20 events, 10 per chunk",
        events: 20,
        per_write: 10,
        interval_ms: 50,
        calls_per_connection: 30,
    },
    Shape {
        name: "400 events, 10 per chunk",
        events: 400,
        per_write: 10,
        interval_ms: 50,
        calls_per_connection: 1,
    },
];
pub const COST_CONNECTIONS: usize = 100;
/// The window of [`idle_ns_per_s`].
const IDLE_WINDOW: Duration = Duration::from_millis(1000);

/// One shape's window.
#[derive(Clone, Debug, Serialize)]
pub struct ShapeRun {
    pub shape: &'static str,
    pub calls: u64,
    pub events: u64,
    /// As written: calls × chunks per call.
    pub chunks: u64,
    pub seconds: f64,
    /// Envoy's CPU over the window, idle taken out.
    pub cpu_us: f64,
    pub worker_busy: f64,
    /// streamtap's count (from its summaries), where it exports: a check
    /// that the paced writes reached Envoy as written.
    pub envoy_events_per_chunk: Option<f64>,
}

impl ShapeRun {
    pub fn sample(&self) -> Sample {
        Sample {
            calls: self.calls as f64,
            events: self.events as f64,
            chunks: self.chunks as f64,
            cpu_us: self.cpu_us,
        }
    }
}

/// A fresh collector and Envoy for `variant`, warmed up (connections, pools,
/// the Wasm VM's compiled tiers), with Envoy's pid.
pub fn warmed_envoy(
    bench: &Bench,
    variant: Variant,
    what: &str,
) -> Result<(Envoy, Collector, u32), String> {
    let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
    let filter = variant
        .filter()
        .ok_or("the cost model and the A/B need Envoy".to_string())?;
    let opts = EnvoyOptions::new(bench.upstream.addr, collector.addr)
        .with_filter(filter)
        .with_plugin_config(&variant.plugin_config(&bench.settings.streamtap_config)?);
    let envoy = Envoy::start(&variant.envoy_options(opts, bench.settings))?;
    let pid = envoy.pid().ok_or("Envoy has no pid")?;
    let warm = bench.rt.block_on(loadgen::run(&workload::saturation(
        envoy.listener,
        bench.settings,
        WARMUP,
    )));
    check_errors(&format!("{what}, warm-up"), &warm)?;
    Ok((envoy, collector, pid))
}

/// Envoy's CPU (schedstat ns), the whole process.
pub fn run_ns(pid: u32) -> Result<u64, String> {
    procfs::process_run_ns(pid).ok_or("no schedstat for Envoy".to_string())
}

/// Envoy's CPU rate with no load (ns per s), over [`IDLE_WINDOW`]: its
/// timers, the stats flush, the filters' ticks, taken out of each window.
pub fn idle_ns_per_s(pid: u32) -> Result<f64, String> {
    let (ns0, t0) = (run_ns(pid)?, Instant::now());
    thread::sleep(IDLE_WINDOW);
    Ok(run_ns(pid)?.saturating_sub(ns0) as f64 / t0.elapsed().as_secs_f64())
}

/// The paced load of `shape` on [`COST_CONNECTIONS`] streams to `target`.
pub fn workload(target: std::net::SocketAddr, shape: &Shape) -> Workload {
    let chunking = if shape.per_write == 1 {
        "event".to_string()
    } else {
        format!("batch:{}", shape.per_write)
    };
    Workload {
        target,
        connections: COST_CONNECTIONS,
        shape: CallShape {
            chunking,
            ..CallShape::with_events(shape.events, shape.interval_ms)
        },
        stop: Stop::CallsPerConnection(shape.calls_per_connection),
        record: false,
        stagger: Duration::from_millis(shape.interval_ms),
    }
}

/// One set-up in one round: every shape, on one fresh Envoy.
pub fn run_shapes(bench: &Bench, variant: Variant) -> Result<Vec<ShapeRun>, String> {
    let what = format!("cost model, {}", variant.label());
    let (envoy, collector, pid) = warmed_envoy(bench, variant, &what)?;
    thread::sleep(EXPORT_SETTLE);
    let idle_ns_per_s = idle_ns_per_s(pid)?;
    let worker_ticks = || procfs::threads_cpu(pid, "wrk:").total();
    let tck = bench.tck;
    let mut runs = Vec::with_capacity(SHAPES.len());
    for shape in SHAPES {
        let w = workload(envoy.listener, &shape);
        let before = collector.calls().len();
        let (ns0, w0, t0) = (run_ns(pid)?, worker_ticks(), Instant::now());
        let report = bench.rt.block_on(loadgen::run(&w));
        let (ns1, w1, seconds) = (run_ns(pid)?, worker_ticks(), t0.elapsed().as_secs_f64());
        check_errors(&format!("{what}, {}", shape.name), &report)?;
        let cpu_ns = ns1.saturating_sub(ns0) as f64 - idle_ns_per_s * seconds;
        let envoy_events_per_chunk = if variant.is_streamtap() {
            thread::sleep(EXPORT_SETTLE);
            let exported = collector.calls();
            let (chunks, events) =
                chunk_counts(exported.get(before..).unwrap_or_default(), shape.events);
            match (events, chunks) {
                (Some(e), Some(c)) if c > 0.0 => Some(e / c),
                _ => None,
            }
        } else {
            None
        };
        runs.push(ShapeRun {
            shape: shape.name,
            calls: report.calls,
            events: report.events,
            chunks: report.calls * shape.chunks_per_call() as u64,
            seconds,
            cpu_us: cpu_ns / 1000.0,
            worker_busy: w1.saturating_sub(w0) as f64 / tck / seconds,
            envoy_events_per_chunk,
        });
    }
    drop(envoy);
    Ok(runs)
}
