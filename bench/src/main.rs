//! `make bench`: streamtap's cost against plain Envoy, measured side by side in
//! one run on one machine.
//!
//! The same streaming workload runs against: the mock upstream directly, plain
//! Envoy, Envoy + a near-empty Wasm filter (the floor of any Wasm body filter),
//! Envoy + streamtap (exporting to the collector, content capture on), Envoy +
//! the native `sse_to_metadata` filter, and Envoy + a response-buffering Lua
//! filter (the negative control). Envoy runs one worker (`--concurrency 1`);
//! the variants alternate, round after round, so machine noise shows as spread.
//!
//! Per variant and round: TTFT and per-event delivery delay at moderate load,
//! events/s and calls/s at saturation, Envoy CPU per event (from
//! `/proc/<pid>/stat`), Envoy RSS; for streamtap also the memory per open
//! stream. Writes `bench/results/latest.json` and `bench/results/latest.png`
//! and prints a table. See `bench/README.md` for the method.
//!
//! Environment (for quick tries; `make bench` sets none): `BENCH_ROUNDS`,
//! `BENCH_SATURATION_SECONDS`, `BENCH_SATURATION_CONNECTIONS`, `BENCH_OUT_DIR`, `BENCH_VARIANTS`
//! (comma-separated keys, e.g. `plain_envoy,streamtap`), `BENCH_SATURATION_CHUNKING`,
//! `BENCH_MEMORY=0` (skip the idle-stream memory runs), `BENCH_STREAMTAP_CONFIG` (streamtap's
//! plugin config in the timed runs).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::thread;
use std::time::{Duration, Instant};

use crate::loadgen::{percentile, spread, CallShape, LoadReport, Stop, Workload};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use serde_json::{json, Map, Value};
use testbed::collector::Collector;
use testbed::envoy::{
    default_wasm_path, empty_filter_wasm_path, envoy_bin, workspace_root, Envoy, EnvoyOptions,
    FilterVariant, DEFAULT_PLUGIN_CONFIG,
};
use testbed::procfs::{self, CpuTicks};
use testbed::upstream::MockUpstream;

mod analysis;
mod chart;
mod cpu;
mod loadgen;
mod measure;
mod memory;
mod report;
mod settings;
#[cfg(test)]
mod tests;
mod variants;
mod workload;

use analysis::*;
use chart::*;
use cpu::*;
use measure::*;
use memory::*;
use report::*;
use settings::*;
use variants::*;
use workload::*;

/// One figure per name, for one variant in one round.
pub(crate) type Figures = BTreeMap<String, f64>;

/// What one variant measured in one round.
pub(crate) struct RoundRun {
    pub(crate) figures: Figures,
    pub(crate) delays_us: Vec<u64>,
    pub(crate) timeline_us: Option<Vec<u64>>,
}

pub(crate) fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nbench failed: {message}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn run() -> Result<(), String> {
    let wall = Instant::now();
    let settings = Settings::from_env()?;
    preflight()?;
    let machine = machine_info();
    println!(
        "streamtap bench: {} × {}, {} GiB, kernel {}, {}",
        machine["nproc"],
        machine["cpu_model"].as_str().unwrap_or("?"),
        machine["mem_total_bytes"].as_u64().unwrap_or(0) >> 30,
        machine["kernel"].as_str().unwrap_or("?"),
        machine["envoy_version"].as_str().unwrap_or("?"),
    );
    let busy = machine["busy_cores_before_start"].as_f64().unwrap_or(0.0);
    if busy > 0.15 {
        println!(
            "WARNING: the machine was {:.0}% busy (of one core) before the bench started: other work \
             will disturb the figures (see `other` below)",
            busy * 100.0
        );
    }
    let wasm_bytes = file_size(&default_wasm_path());
    let empty_wasm_bytes = file_size(&empty_filter_wasm_path());
    println!(
        "streamtap.wasm {wasm_bytes} bytes, empty-filter.wasm {empty_wasm_bytes} bytes; \
         {} rounds; saturation {:?} on {} connections\n",
        settings.rounds, settings.saturation, settings.saturation_connections
    );

    let upstream = MockUpstream::start().map_err(|e| format!("mock upstream: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let tck = procfs::clock_ticks_per_second() as f64;

    let mut rounds: BTreeMap<Variant, Vec<Figures>> = BTreeMap::new();
    let mut delays: BTreeMap<Variant, Vec<u64>> = BTreeMap::new();
    let mut timelines: BTreeMap<Variant, Vec<u64>> = BTreeMap::new();
    for round in 0..settings.rounds {
        // Rotate the order each round, so no variant always runs first or last.
        let n = settings.variants.len();
        let order: Vec<Variant> = (0..n).map(|i| settings.variants[(i + round) % n]).collect();
        for variant in order {
            // A run that other processes disturbed is run again (a few times, while
            // time allows); the least disturbed attempt is kept.
            let mut best: Option<RoundRun> = None;
            for attempt in 0..=MAX_RETRIES {
                let t = Instant::now();
                let mut run = run_variant(&rt, &upstream, variant, round, &settings, tck)?;
                let other = disturbance(&run.figures);
                run.figures.insert("attempt".to_string(), attempt as f64);
                print_round_line(variant, round, &run.figures, t.elapsed());
                if best
                    .as_ref()
                    .is_none_or(|b| other < disturbance(&b.figures))
                {
                    best = Some(run);
                }
                if other <= DISTURBED_OTHER_CORES || wall.elapsed() > RETRY_UNTIL {
                    break;
                }
                if attempt < MAX_RETRIES {
                    println!(
                        "     disturbed: other processes took {:.0}% of a core; running it again",
                        other * 100.0
                    );
                }
            }
            let Some(run) = best else { continue };
            delays.entry(variant).or_default().extend(run.delays_us);
            if let Some(tl) = run.timeline_us {
                timelines.insert(variant, tl);
            }
            rounds.entry(variant).or_default().push(run.figures);
        }
        println!();
    }

    println!(
        "latency side by side (plain Envoy and streamtap at the same time, {MODERATE_CONNECTIONS} streams each):"
    );
    let side_by_side = paired_latency(
        &rt,
        &upstream,
        PAIRED_REPETITIONS,
        &settings.streamtap_config,
    )?;
    println!();
    let memory = if settings.memory {
        println!("memory per open stream ({IDLE_STREAMS} idle streams vs none):");
        memory_runs(&rt, &upstream)?
    } else {
        json!({})
    };

    let summaries: BTreeMap<Variant, BTreeMap<String, Value>> = rounds
        .iter()
        .map(|(v, figs)| (*v, summarize(figs)))
        .collect();
    let med = |v: Variant, key: &str| -> Option<f64> {
        summaries
            .get(&v)
            .and_then(|s| s.get(key))
            .and_then(|x| x["median"].as_f64())
    };
    let paired = |a: Variant, b: Variant, key: &str, f: fn(f64, f64) -> f64| -> Vec<f64> {
        let (Some(ra), Some(rb)) = (rounds.get(&a), rounds.get(&b)) else {
            return Vec::new();
        };
        ra.iter()
            .zip(rb)
            .filter_map(|(x, y)| Some(f(*x.get(key)?, *y.get(key)?)))
            .collect()
    };
    let ratio = |x: f64, y: f64| x / y;
    let minus = |x: f64, y: f64| x - y;

    let mut ratios = Map::new();
    for (name, other) in [
        ("vs_plain_envoy", Variant::Plain),
        ("vs_empty_wasm", Variant::EmptyWasm),
        ("vs_sse_to_metadata", Variant::SseToMetadata),
    ] {
        let mut r = Map::new();
        for (k, figure) in [
            ("events_per_s", "sat_events_per_s"),
            ("sat_cpu_per_event", "sat_envoy_cpu_us_per_event"),
            (
                "sat_worker_cpu_per_event",
                "sat_envoy_worker_cpu_us_per_event",
            ),
            ("paced_cpu_per_event", "paced_envoy_cpu_us_per_event"),
            (
                "paced_worker_cpu_per_event",
                "paced_envoy_worker_cpu_us_per_event",
            ),
        ] {
            r.insert(
                k.to_string(),
                spread_json(&paired(Variant::Streamtap, other, figure, ratio)),
            );
        }
        ratios.insert(name.to_string(), Value::Object(r));
    }
    let added_p99 = paired(Variant::Streamtap, Variant::Plain, "delay_p99_us", minus);
    let added_p50 = paired(Variant::Streamtap, Variant::Plain, "delay_p50_us", minus);
    ratios.insert(
        "added_delay_over_plain_envoy_us".to_string(),
        json!({"p99": spread_json(&added_p99), "p50": spread_json(&added_p50)}),
    );
    for (k, figure) in [
        ("paced", "paced_envoy_cpu_us_per_event"),
        ("sat", "sat_envoy_cpu_us_per_event"),
    ] {
        ratios.insert(
            format!("streamtap_cpu_us_per_event_above_empty_wasm_{k}"),
            spread_json(&paired(
                Variant::Streamtap,
                Variant::EmptyWasm,
                figure,
                minus,
            )),
        );
    }

    // Targets: medians of the per-round (paired) figures. Events/s compare
    // Envoy only when Envoy's worker was the limit for both variants; else the
    // capacity ratio is the inverse ratio of worker CPU per event.
    let median_of = |v: &[f64]| spread(v).map(|s| s.median);
    let saturated =
        |v: Variant| med(v, "sat_envoy_worker_busy").is_some_and(|b| b >= SATURATED_WORKER_BUSY);
    let throughput_target = |other: Variant, bound: f64, key: &str, text: String| -> Value {
        let eps = median_of(&paired(
            Variant::Streamtap,
            other,
            "sat_events_per_s",
            ratio,
        ));
        let capacity = median_of(&paired(
            other,
            Variant::Streamtap,
            "paced_envoy_worker_cpu_us_per_event",
            ratio,
        ));
        let (basis, measured) = if saturated(Variant::Streamtap) && saturated(other) {
            ("events/s at saturation, Envoy's worker the limit", eps)
        } else {
            (
                "capacity: inverse ratio of Envoy worker CPU per event at paced load (the bench did not saturate Envoy's worker)",
                capacity,
            )
        };
        let mut t = target(key, &text, measured, move |x| x >= bound);
        t["basis"] = json!(basis);
        t["events_per_s_ratio"] = json!(eps);
        t["capacity_ratio_from_worker_cpu"] = json!(capacity);
        t
    };
    let added_sequential = median_of(&added_p99);
    let added = side_by_side["pooled_added_p99_us"].as_f64();
    let mem_growth = memory["capped_growth_per_stream_bytes"].as_f64();
    let targets = vec![
        throughput_target(
            Variant::EmptyWasm,
            TARGET_VS_EMPTY,
            "events_per_s_vs_empty_wasm",
            format!("streamtap events/s >= {TARGET_VS_EMPTY} x near-empty wasm"),
        ),
        throughput_target(
            Variant::SseToMetadata,
            TARGET_VS_SSE,
            "events_per_s_vs_sse_to_metadata",
            format!("streamtap events/s >= {TARGET_VS_SSE} x native sse_to_metadata"),
        ),
        {
            let mut t = target(
                "added_delay_p99_us",
                &format!(
                    "per-event delay p99 added over plain Envoy <= {TARGET_ADDED_P99_US} us at moderate load"
                ),
                added,
                |x| x <= TARGET_ADDED_P99_US,
            );
            t["basis"] = json!("plain Envoy and streamtap side by side, at the same time: p99 of all repetitions' events pooled");
            t["per_repetition_added_p99_us"] = side_by_side["added_p99_us"].clone();
            t["sequential_runs_added_p99_us"] = json!(added_sequential);
            t
        },
        target(
            "memory_per_stream_independent_of_length",
            &format!(
                "memory streamtap adds per open stream grows <= {TARGET_MEM_GROWTH_BYTES} bytes for a 10x longer response (content capped at {IDLE_CAPPED_CONTENT_BYTES} bytes; Envoy's own growth subtracted)"
            ),
            mem_growth,
            |x| x <= TARGET_MEM_GROWTH_BYTES,
        ),
        target(
            "wasm_size_bytes",
            &format!("streamtap.wasm <= {TARGET_WASM_BYTES} bytes"),
            Some(wasm_bytes as f64),
            |x| x <= TARGET_WASM_BYTES as f64,
        ),
    ];

    let notes = notes(&summaries);
    let workload = json!({
        "events_per_call": EVENTS_PER_CALL,
        "tokens_per_call": EVENTS_PER_CALL - loadgen::NON_TOKEN_EVENTS,
        "request": loadgen::CHAT_BODY,
        "mock_chunking": "event (one write per SSE event)",
        "rounds": settings.rounds,
        "envoy_concurrency": 1,
        "moderate": {
            "connections": MODERATE_CONNECTIONS,
            "interval_ms": MODERATE_INTERVAL_MS,
            "calls_per_connection": MODERATE_CALLS_PER_CONNECTION,
            "stagger": "connection i starts i/20 of an interval late",
        },
        "saturation": {
            "connections": settings.saturation_connections,
            "interval_ms": 0,
            "seconds": settings.saturation.as_secs_f64(),
            "warmup_seconds": WARMUP.as_secs_f64(),
        },
        "idle_streams": {
            "streams": IDLE_STREAMS,
            "interval_ms": IDLE_INTERVAL_MS,
            "short_events": IDLE_SHORT_EVENTS,
            "long_events": IDLE_LONG_EVENTS,
            "capped_max_content_bytes": IDLE_CAPPED_CONTENT_BYTES,
        },
        "timeline": {"tokens": TIMELINE_TOKENS, "interval_ms": TIMELINE_INTERVAL_MS},
        "streamtap_plugin_config": settings.streamtap_config,
    });
    let variants_json: Vec<Value> = VARIANTS
        .iter()
        .map(|v| {
            json!({
                "key": v.key(),
                "label": v.label(),
                "rounds": rounds.get(v).cloned().unwrap_or_default(),
                "summary": summaries.get(v).cloned().unwrap_or_default(),
                "delay_samples": delays.get(v).map_or(0, Vec::len),
            })
        })
        .collect();
    let timeline_json: Map<String, Value> = timelines
        .iter()
        .map(|(v, t)| {
            (
                v.key().to_string(),
                json!(t.iter().map(|&us| us as f64 / 1000.0).collect::<Vec<f64>>()),
            )
        })
        .collect();

    fs::create_dir_all(&settings.out_dir)
        .map_err(|e| format!("create {}: {e}", settings.out_dir.display()))?;
    let png = settings.out_dir.join("latest.png");
    draw_chart(&png, &timelines, &delays, &machine)?;

    let report = json!({
        "schema": "streamtap-bench/1",
        "machine": machine,
        "wasm": {"streamtap_bytes": wasm_bytes, "empty_filter_bytes": empty_wasm_bytes},
        "workload": workload,
        "variants": variants_json,
        "ratios": ratios,
        "latency_side_by_side": side_by_side,
        "memory": memory,
        "timeline_ms": timeline_json,
        "targets": targets,
        "notes": notes,
        "chart": "latest.png",
        "wall_seconds": wall.elapsed().as_secs_f64(),
    });
    let json_path = settings.out_dir.join("latest.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    fs::write(&json_path, text + "\n")
        .map_err(|e| format!("write {}: {e}", json_path.display()))?;

    print_report(
        &summaries,
        &ratios,
        &side_by_side,
        &memory,
        &targets,
        &notes,
        wasm_bytes,
    );
    println!(
        "\nwrote {} and {} in {:.0} s",
        json_path.display(),
        png.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}
