//! `make bench-ab`: two set-ups side by side, for one lever at a time. Both
//! Envoys run for the whole comparison; their windows alternate (A B, B A,
//! …) so that the machine's drift falls on both alike. Per window, one
//! Envoy's CPU (schedstat ns, its idle rate taken out) over a load of short
//! calls (CPU per call) and one of long calls written ten events at a time
//! (CPU per event). The verdict is on the paired differences: their median,
//! and "within the noise" while their range holds 0.

use std::thread;
use std::time::Instant;

use serde::Serialize;
use testbed::collector::Collector;
use testbed::envoy::Envoy;

use super::cost::{idle_ns_per_s, run_ns, warmed_envoy, workload, Shape};
use super::round::Bench;
use crate::analysis::{spread_of, Spread};
use crate::loadgen::{self, LoadReport};
use crate::settings::EXPORT_SETTLE;
use crate::variants::Variant;
use crate::workload::check_errors;

/// Calls of 4 events (the fewest the mock writes), one write each, 5 ms
/// apart: the call's own cost dominates.
const SHORT: Shape = Shape {
    name: "4 events, 1 per chunk",
    events: 4,
    per_write: 1,
    interval_ms: 5,
    calls_per_connection: 20,
};
/// Calls of 400 events, ten a write, 50 ms apart: the events' cost dominates.
const LONG: Shape = Shape {
    name: "400 events, 10 per chunk",
    events: 400,
    per_write: 10,
    interval_ms: 50,
    calls_per_connection: 1,
};

/// One set-up's figures in one repetition.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Window {
    pub cpu_per_call_us: f64,
    pub cpu_per_event_us: f64,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub a: &'static str,
    pub b: &'static str,
    pub repetitions: Vec<(Window, Window)>,
    /// B − A, µs of Envoy CPU per short call.
    pub per_call_b_minus_a: Option<Spread>,
    /// B − A, µs of Envoy CPU per event of the long calls.
    pub per_event_b_minus_a: Option<Spread>,
}

struct Side {
    variant: Variant,
    // Envoy first: stopped before its collector.
    envoy: Envoy,
    _collector: Collector,
    pid: u32,
    idle_ns_per_s: f64,
}

/// Envoy's CPU (µs, idle taken out) over one load, and its report.
fn window(bench: &Bench, side: &Side, shape: &Shape) -> Result<(f64, LoadReport), String> {
    let (ns0, t0) = (run_ns(side.pid)?, Instant::now());
    let report = bench
        .rt
        .block_on(loadgen::run(&workload(side.envoy.listener, shape)));
    let (ns1, seconds) = (run_ns(side.pid)?, t0.elapsed().as_secs_f64());
    check_errors(&format!("A/B {}", side.variant.label()), &report)?;
    let cpu_us = (ns1.saturating_sub(ns0) as f64 - side.idle_ns_per_s * seconds) / 1000.0;
    Ok((cpu_us, report))
}

fn measure(bench: &Bench, side: &Side) -> Result<Window, String> {
    let (short_us, short) = window(bench, side, &SHORT)?;
    let (long_us, long) = window(bench, side, &LONG)?;
    // Let the export of what just ran land before the other side's window.
    thread::sleep(EXPORT_SETTLE);
    Ok(Window {
        cpu_per_call_us: short_us / short.calls.max(1) as f64,
        cpu_per_event_us: long_us / long.events.max(1) as f64,
    })
}

pub fn compare(bench: &Bench, a: Variant, b: Variant, reps: usize) -> Result<Comparison, String> {
    let start = |variant: Variant| -> Result<Side, String> {
        let what = format!("A/B {}", variant.label());
        let (envoy, collector, pid) = warmed_envoy(bench, variant, &what)?;
        Ok(Side {
            variant,
            envoy,
            _collector: collector,
            pid,
            idle_ns_per_s: 0.0,
        })
    };
    let mut sides = [start(a)?, start(b)?];
    thread::sleep(EXPORT_SETTLE);
    // Both are up: each one's idle rate is measured with the other idle too.
    for side in &mut sides {
        side.idle_ns_per_s = idle_ns_per_s(side.pid)?;
    }
    let mut repetitions = Vec::with_capacity(reps);
    for rep in 0..reps {
        let first = rep % 2;
        let x = measure(bench, &sides[first])?;
        let y = measure(bench, &sides[1 - first])?;
        let (wa, wb) = if first == 0 { (x, y) } else { (y, x) };
        println!(
            "  rep {rep}: per call {:>6.1} vs {:>6.1} µs ({:+.1}); per event {:>5.2} vs {:>5.2} µs ({:+.2})",
            wa.cpu_per_call_us,
            wb.cpu_per_call_us,
            wb.cpu_per_call_us - wa.cpu_per_call_us,
            wa.cpu_per_event_us,
            wb.cpu_per_event_us,
            wb.cpu_per_event_us - wa.cpu_per_event_us
        );
        repetitions.push((wa, wb));
    }
    let diffs = |f: fn(&Window) -> f64| {
        spread_of(
            &repetitions
                .iter()
                .map(|(a, b)| f(b) - f(a))
                .collect::<Vec<_>>(),
        )
    };
    Ok(Comparison {
        a: a.key(),
        b: b.key(),
        per_call_b_minus_a: diffs(|w| w.cpu_per_call_us),
        per_event_b_minus_a: diffs(|w| w.cpu_per_event_us),
        repetitions,
    })
}
