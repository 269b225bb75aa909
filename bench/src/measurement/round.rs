//! One variant in one round, on a fresh Envoy and collector: warm-up,
//! moderate load, (Envoy only) paced load, saturation.

use std::net::SocketAddr;
use std::thread;
use std::time::Duration;

use crate::loadgen::{self, percentile, LoadReport};
use serde_json::Value;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions};
use testbed::procfs;
use testbed::upstream::MockUpstream;

use super::cpu::CpuSnapshot;
use super::figures::{CpuFigures, Moderate, Paced, RoundFigures, Saturation, StreamtapStats};
use crate::settings::{Settings, EVENTS_PER_CALL, EXPORT_SETTLE, WARMUP};
use crate::variants::Variant;
use crate::workload::{self, check_errors};

/// What one variant measured in one round.
pub struct RoundRun {
    pub figures: RoundFigures,
    pub delays_us: Vec<u64>,
    pub timeline_us: Option<Vec<u64>>,
}

/// What a round runs on: the runtime, and the set-up under test.
struct Rig<'a> {
    rt: &'a tokio::runtime::Runtime,
    // Envoy first: dropped (stopped) before its collector, as ever.
    envoy: Option<Envoy>,
    collector: Collector,
    target: SocketAddr,
    pid: Option<u32>,
    tck: f64,
    what: String,
}

impl Rig<'_> {
    fn load(&self, phase: &str, w: &loadgen::Workload) -> Result<LoadReport, String> {
        let report = self.rt.block_on(loadgen::run(w));
        check_errors(&format!("{}, {phase}", self.what), &report)?;
        Ok(report)
    }

    /// Runs `w` with a CPU window around it.
    fn measured(&self, phase: &str, w: &loadgen::Workload) -> Result<Measured, String> {
        let calls_before = self.collector.calls().len();
        let start = CpuSnapshot::take(self.pid);
        let report = self.rt.block_on(loadgen::run(w));
        let end = CpuSnapshot::take(self.pid);
        check_errors(&format!("{}, {phase}", self.what), &report)?;
        let cpu = start.figures(&end, report.events, self.tck);
        Ok(Measured {
            report,
            cpu,
            calls_before,
        })
    }

    /// The summaries exported since `calls_before`, once they have had the
    /// time to arrive.
    fn exported_since(&self, calls_before: usize) -> Vec<Value> {
        thread::sleep(EXPORT_SETTLE);
        let all = self.collector.calls();
        all.get(calls_before..).unwrap_or_default().to_vec()
    }
}

/// A run, the CPU over it, and how many summaries the collector had before.
struct Measured {
    report: LoadReport,
    cpu: CpuFigures,
    calls_before: usize,
}

/// What every round shares: the runtime, the mock upstream, the settings,
/// and the clock ticks per second of `/proc`'s CPU times.
pub struct Bench<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub upstream: &'a MockUpstream,
    pub settings: &'a Settings,
    pub tck: f64,
}

pub fn run_variant(bench: &Bench, variant: Variant, round: usize) -> Result<RoundRun, String> {
    let Bench {
        rt,
        upstream,
        settings,
        tck,
    } = *bench;
    let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
    let envoy = match variant.filter() {
        None => None,
        Some(filter) => Some(Envoy::start(
            &variant.envoy_options(
                EnvoyOptions::new(upstream.addr, collector.addr)
                    .with_filter(filter)
                    .with_plugin_config(&variant.plugin_config(&settings.streamtap_config)?),
                settings,
            ),
        )?),
    };
    let rig = Rig {
        rt,
        target: envoy.as_ref().map_or(upstream.addr, |e| e.listener),
        pid: envoy.as_ref().and_then(Envoy::pid),
        envoy,
        collector,
        tck,
        what: format!("{} round {round}", variant.label()),
    };

    // Warm-up: connections, Envoy's pools, the Wasm VM's compiled tiers.
    rig.load(
        "warm-up",
        &workload::saturation(rig.target, settings, WARMUP),
    )?;
    thread::sleep(Duration::from_millis(200));

    let (moderate, delays_us) = moderate(&rig)?;
    // Timeline of one slow call (first round only).
    let timeline_us = if round == 0 && variant.in_timeline() {
        Some(rt.block_on(loadgen::timeline(rig.target, &workload::timeline()))?)
    } else {
        None
    };
    let paced = if rig.pid.is_some() {
        paced(&rig)?
    } else {
        Paced::default()
    };
    let mut figures = saturation(&rig, settings, variant)?;
    figures.moderate = moderate;
    figures.paced = paced;
    Ok(RoundRun {
        figures,
        delays_us,
        timeline_us,
    })
}

fn sorted(v: &[u64]) -> Vec<u64> {
    let mut v = v.to_vec();
    v.sort_unstable();
    v
}

fn pf(sorted: &[u64], q: f64) -> Option<f64> {
    percentile(sorted, q).map(|x| x as f64)
}

/// 1. Moderate load: latency. Also the delays, for the chart's CDF.
fn moderate(rig: &Rig) -> Result<(Moderate, Vec<u64>), String> {
    let m = rig.measured("moderate load", &workload::moderate(rig.target))?;
    let ttft = sorted(&m.report.ttft_us);
    let delays = sorted(&m.report.delays_us);
    let (chunks, events) = chunk_counts(&rig.exported_since(m.calls_before), EVENTS_PER_CALL);
    let figures = Moderate {
        calls: Some(m.report.calls as f64),
        events: Some(m.report.events as f64),
        ttft_p50_us: pf(&ttft, 0.50),
        ttft_p99_us: pf(&ttft, 0.99),
        delay_p50_us: pf(&delays, 0.50),
        delay_p90_us: pf(&delays, 0.90),
        delay_p99_us: pf(&delays, 0.99),
        delay_max_us: delays.last().map(|&x| x as f64),
        envoy_chunks_per_call: chunks,
        envoy_events_per_chunk: opt_div(events, chunks),
        cpu: m.cpu,
    };
    Ok((figures, m.report.delays_us))
}

/// 2. Paced high load: every event its own chunk; CPU per event.
fn paced(rig: &Rig) -> Result<Paced, String> {
    let m = rig.measured("paced load", &workload::paced(rig.target))?;
    let d = sorted(&m.report.delays_us);
    let (chunks, events) = chunk_counts(&rig.exported_since(m.calls_before), EVENTS_PER_CALL);
    Ok(Paced {
        events: Some(m.report.events as f64),
        events_per_s: Some(m.report.events_per_second()),
        delay_p50_us: pf(&d, 0.50),
        delay_p99_us: pf(&d, 0.99),
        envoy_events_per_chunk: opt_div(events, chunks),
        cpu: m.cpu,
    })
}

/// 3. Saturation: throughput; and Envoy's memory and counters after it.
fn saturation(rig: &Rig, settings: &Settings, variant: Variant) -> Result<RoundFigures, String> {
    let stats_before = rig.envoy.as_ref().and_then(|e| e.stats().ok());
    let w = workload::saturation(rig.target, settings, settings.saturation);
    let m = rig.measured("saturation", &w)?;
    let sat = &m.report;
    let envoy_rss_mb = rig
        .pid
        .and_then(procfs::process_rss)
        .map(|b| b as f64 / 1048576.0);
    let exported = rig.exported_since(m.calls_before);
    let (chunks, events) = chunk_counts(&exported, EVENTS_PER_CALL);
    let mut figures = RoundFigures {
        envoy_rss_mb,
        sat: Saturation {
            seconds: Some(sat.elapsed.as_secs_f64()),
            calls: Some(sat.calls as f64),
            events: Some(sat.events as f64),
            events_per_s: Some(sat.events_per_second()),
            calls_per_s: Some(sat.calls_per_second()),
            client_events_per_read: opt_div(Some(sat.events as f64), Some(sat.reads as f64)),
            envoy_chunks_per_call: chunks,
            envoy_events_per_chunk: opt_div(events, chunks),
            summaries_received: Some(exported.len() as f64),
            cpu: m.cpu,
            ..Saturation::default()
        },
        ..RoundFigures::default()
    };
    if let (Some(envoy), Some(before)) = (rig.envoy.as_ref(), stats_before) {
        if let Ok(after) = envoy.stats() {
            let delta = |k: &str| {
                after
                    .get(k)
                    .map(|a| a.saturating_sub(*before.get(k).unwrap_or(&0)) as f64)
            };
            figures.sat.envoy_downstream_rq = delta("http.ingress_http.downstream_rq_completed");
            if variant.is_streamtap() {
                let stat = |s: &str| delta(&format!("wasmcustom.streamtap.{s}"));
                figures.sat.streamtap = StreamtapStats {
                    stream_events: stat("stream_events"),
                    calls: stat("calls"),
                    summaries_exported: stat("summaries_exported"),
                    summaries_dropped: stat("summaries_dropped"),
                };
                figures.streamtap_parse_errors_total = after
                    .get("wasmcustom.streamtap.parse_errors")
                    .map(|&x| x as f64);
            }
        }
    }
    Ok(figures)
}

/// Body chunks and SSE events per call streamtap saw, from its summaries
/// (`chunks`, `events`; completed calls only): `None` when no summary says.
/// (The near-empty filter's `{"chunks":N}` records are not used: its export,
/// 64 records per 200 ms tick, lags seconds behind a saturation run, so they
/// cannot be told apart by phase.)
pub fn chunk_counts(records: &[Value], events_per_call: usize) -> (Option<f64>, Option<f64>) {
    let mut n = 0u64;
    let mut chunks = 0u64;
    let mut events = 0u64;
    for r in records {
        // Completed calls only (the calls cut at the deadline are partial).
        if r.get("outcome").is_none_or(|o| o != "completed") {
            continue;
        }
        let Some(c) = r.get("chunks").and_then(Value::as_u64) else {
            continue;
        };
        n += 1;
        chunks += c;
        events += r
            .get("events")
            .and_then(Value::as_u64)
            .unwrap_or(events_per_call as u64);
    }
    if n == 0 {
        return (None, None);
    }
    (
        Some(chunks as f64 / n as f64),
        Some(events as f64 / n as f64),
    )
}

fn opt_div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chunk_counts_average_completed_records() {
        let records = vec![
            json!({"chunks": 4, "events": 50, "outcome": "completed"}),
            json!({"chunks": 2, "events": 50, "outcome": "completed"}),
            json!({"chunks": 1, "events": 7, "outcome": "client_cancelled"}),
        ];
        assert_eq!(chunk_counts(&records, 50), (Some(3.0), Some(50.0)));
        // The empty filter's records (chunks only) are not used.
        let empty = vec![json!({"chunks": 10}), json!({"chunks": 20})];
        assert_eq!(chunk_counts(&empty, 50), (None, None));
        assert_eq!(chunk_counts(&[], 50), (None, None));
    }
}
