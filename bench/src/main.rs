//! `make bench`: streamtap's cost against plain Envoy, measured side by side in
//! one run on one machine.
//!
//! The same streaming workload runs against: the mock upstream directly, plain
//! Envoy, Envoy + a near-empty Wasm filter (the floor of any Wasm body filter),
//! Envoy + streamtap (exporting to the collector, content capture on), the
//! same with `stream_health` off (the price of that accounting), Envoy +
//! the native `sse_to_metadata` filter, and Envoy + a response-buffering Lua
//! filter (the negative control). Envoy runs one worker (`--concurrency 1`);
//! the variants alternate, round after round, so machine noise shows as spread.
//!
//! Per variant and round: TTFT and per-event delivery delay at moderate load,
//! events/s and calls/s at saturation, Envoy CPU per event (from
//! `/proc/<pid>/stat`), Envoy RSS; for streamtap also the memory per open
//! stream. Writes `bench/results/latest.json` and `bench/results/latest.png`
//! and prints a table. See `bench/README.md` for the method and the
//! environment's knobs (`settings.rs`).
//!
//! [`settings`] what runs, [`variants`] the set-ups, [`workload`] the loads,
//! [`measurement`] the runs and their typed figures, [`analysis`] ratios,
//! targets and notes, [`report`] the JSON and the printout, [`chart`] the PNG.

mod analysis;
mod chart;
mod cost_model;
mod loadgen;
mod measurement;
mod report;
mod settings;
mod variants;
mod workload;

use std::collections::BTreeMap;
use std::fs;
use std::process::ExitCode;
use std::time::Instant;

use analysis::{Analysis, Ratios, Rounds};
use measurement::machine::{self, Machine};
use measurement::round::{run_variant, Bench, RoundRun};
use measurement::{memory, paired};
use settings::*;
use testbed::envoy::{default_wasm_path, empty_filter_wasm_path};
use testbed::procfs;
use testbed::upstream::MockUpstream;
use variants::Variant;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\nbench failed: {message}");
            ExitCode::FAILURE
        }
    }
}

/// What the rounds kept, per variant.
#[derive(Default)]
struct Kept {
    rounds: Rounds,
    delays: BTreeMap<Variant, Vec<u64>>,
    timelines: BTreeMap<Variant, Vec<u64>>,
}

fn run() -> Result<(), String> {
    let wall = Instant::now();
    let settings = Settings::from_env()?;
    machine::preflight()?;
    let machine = Machine::read();
    let wasm_bytes = machine::file_size(&default_wasm_path());
    let empty_wasm_bytes = machine::file_size(&empty_filter_wasm_path());
    print_start(&machine, &settings, wasm_bytes, empty_wasm_bytes);

    let upstream = MockUpstream::start().map_err(|e| format!("mock upstream: {e}"))?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    if let Some((a, b)) = settings.ab {
        return ab(&rt, &upstream, &settings, a, b, wall);
    }
    let kept = rounds(&rt, &upstream, &settings, wall)?;
    let cost = if settings.cost_variants.is_empty() {
        None
    } else {
        Some(cost_rounds(&rt, &upstream, &settings)?)
    };

    println!(
        "latency side by side (plain Envoy and streamtap at the same time, {MODERATE_CONNECTIONS} streams each):"
    );
    let side_by_side = paired::paired_latency(
        &rt,
        &upstream,
        settings.paired_repetitions,
        &settings.streamtap_config,
    )?;
    println!();
    let memory = if settings.memory {
        println!("memory per open stream ({IDLE_STREAMS} idle streams vs none):");
        Some(memory::memory_runs(&rt, &upstream)?)
    } else {
        None
    };

    let analysis = Analysis {
        rounds: &kept.rounds,
    };
    let results = report::Results {
        machine: &machine,
        wasm_bytes,
        empty_wasm_bytes,
        workload: workload::describe(&settings),
        ratios: Ratios::of(&analysis),
        targets: analysis::targets(&analysis, &side_by_side, memory.as_ref(), wasm_bytes),
        notes: analysis::notes(&analysis),
        analysis,
        delays: &kept.delays,
        timelines: &kept.timelines,
        side_by_side,
        memory,
        cost: cost.as_ref(),
    };
    fs::create_dir_all(&settings.out_dir)
        .map_err(|e| format!("create {}: {e}", settings.out_dir.display()))?;
    let png = settings.out_dir.join("latest.png");
    chart::draw_chart(&png, &kept.timelines, &kept.delays, cost.as_ref(), &machine)?;
    let json_path = report::write_json(&results, &settings.out_dir, wall.elapsed())?;
    report::print(&results);
    println!(
        "\nwrote {} and {} in {:.0} s",
        json_path.display(),
        png.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

fn print_start(machine: &Machine, settings: &Settings, wasm_bytes: u64, empty_wasm_bytes: u64) {
    println!(
        "streamtap bench: {} × {}, {} GiB, kernel {}, {}",
        machine.nproc,
        machine.cpu_model,
        machine.mem_total_bytes >> 30,
        machine.kernel,
        machine.envoy_version,
    );
    let busy = machine.busy_cores_before_start;
    if busy > 0.15 {
        println!(
            "WARNING: the machine was {:.0}% busy (of one core) before the bench started: other work \
             will disturb the figures (see `other` below)",
            busy * 100.0
        );
    }
    println!(
        "streamtap.wasm {wasm_bytes} bytes, empty-filter.wasm {empty_wasm_bytes} bytes; \
         {} rounds; saturation {:?} on {} connections\n",
        settings.rounds, settings.saturation, settings.saturation_connections
    );
}

/// The rounds: every variant once per round, the order rotated each round
/// so that no variant always runs first or last.
fn rounds(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    settings: &Settings,
    wall: Instant,
) -> Result<Kept, String> {
    let bench = Bench {
        rt,
        upstream,
        settings,
        tck: procfs::clock_ticks_per_second() as f64,
    };
    let mut kept = Kept::default();
    for round in 0..settings.rounds {
        let n = settings.variants.len();
        let order: Vec<Variant> = (0..n).map(|i| settings.variants[(i + round) % n]).collect();
        for variant in order {
            let Some(run) = least_disturbed(&bench, variant, round, wall)? else {
                continue;
            };
            kept.delays
                .entry(variant)
                .or_default()
                .extend(run.delays_us);
            if let Some(tl) = run.timeline_us {
                kept.timelines.insert(variant, tl);
            }
            kept.rounds.entry(variant).or_default().push(run.figures);
        }
        println!();
    }
    Ok(kept)
}

/// `make bench-ab`: only the A/B of two set-ups, into `ab.json`.
fn ab(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    settings: &Settings,
    a: Variant,
    b: Variant,
    wall: Instant,
) -> Result<(), String> {
    let bench = Bench {
        rt,
        upstream,
        settings,
        tck: procfs::clock_ticks_per_second() as f64,
    };
    let reps = settings.paired_repetitions.max(2);
    println!(
        "A/B: {} (A) against {} (B), {reps} alternating repetitions:",
        a.label(),
        b.label()
    );
    let comparison = measurement::ab::compare(&bench, a, b, reps)?;
    let line = |what: &str, s: &Option<analysis::Spread>| match s {
        Some(s) => println!(
            "  B − A {what}: median {:+.2} µs ({:+.2} … {:+.2}){}",
            s.median,
            s.min,
            s.max,
            if s.min <= 0.0 && s.max >= 0.0 {
                ", within the noise"
            } else {
                ""
            }
        ),
        None => println!("  B − A {what}: –"),
    };
    line("per call", &comparison.per_call_b_minus_a);
    line("per event", &comparison.per_event_b_minus_a);
    fs::create_dir_all(&settings.out_dir)
        .map_err(|e| format!("create {}: {e}", settings.out_dir.display()))?;
    let path = settings.out_dir.join("ab.json");
    let text = serde_json::to_string_pretty(&comparison).map_err(|e| e.to_string())?;
    fs::write(&path, text).map_err(|e| format!("write {}: {e}", path.display()))?;
    println!(
        "\nwrote {} in {:.0} s",
        path.display(),
        wall.elapsed().as_secs_f64()
    );
    Ok(())
}

/// The cost model: every cost set-up once per round, the order rotated.
fn cost_rounds(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    settings: &Settings,
) -> Result<cost_model::report::CostModel, String> {
    let bench = Bench {
        rt,
        upstream,
        settings,
        tck: procfs::clock_ticks_per_second() as f64,
    };
    println!(
        "cost model ({} set-ups × {} shapes × {} rounds):",
        settings.cost_variants.len(),
        measurement::cost::SHAPES.len(),
        settings.rounds
    );
    let mut runs = cost_model::report::Runs::new();
    for round in 0..settings.rounds {
        let n = settings.cost_variants.len();
        for i in 0..n {
            let variant = settings.cost_variants[(i + round) % n];
            let t = Instant::now();
            let shapes = measurement::cost::run_shapes(&bench, variant)?;
            let fitted = cost_model::fit(
                &shapes
                    .iter()
                    .map(measurement::cost::ShapeRun::sample)
                    .collect::<Vec<_>>(),
            );
            println!(
                "  r{round} {:<34} {}  ({:.1} s)",
                variant.label(),
                fitted.map_or("no fit".to_string(), |c| format!(
                    "per call {:>6.1} µs, per event {:>5.2} µs, per chunk {:>5.2} µs; worker {}",
                    c.per_call_us,
                    c.per_event_us,
                    c.per_chunk_us,
                    shapes
                        .iter()
                        .map(|s| format!("{:.0}%", s.worker_busy * 100.0))
                        .collect::<Vec<_>>()
                        .join("/")
                )),
                t.elapsed().as_secs_f64()
            );
            runs.entry(variant).or_default().push(shapes);
        }
    }
    println!();
    Ok(cost_model::report::analyse(&runs))
}

/// A run that other processes disturbed is run again (a few times, while
/// time allows); the least disturbed attempt is kept.
fn least_disturbed(
    bench: &Bench,
    variant: Variant,
    round: usize,
    wall: Instant,
) -> Result<Option<RoundRun>, String> {
    let mut best: Option<RoundRun> = None;
    for attempt in 0..=MAX_RETRIES {
        let t = Instant::now();
        let mut run = run_variant(bench, variant, round)?;
        let other = run.figures.disturbance();
        run.figures.attempt = Some(attempt as f64);
        report::print_round_line(variant, round, &run.figures, t.elapsed());
        if best
            .as_ref()
            .is_none_or(|b| other < b.figures.disturbance())
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
    Ok(best)
}
