//! What a run leaves: `latest.json`, and the printout (a Markdown table, the
//! headline ratios, the targets' verdicts, the notes).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::analysis::{
    summary_json, Analysis, HealthPrice, PricedDifference, Ratios, Spread, Target,
};
use crate::measurement::figures::{Pick, RoundFigures};
use crate::measurement::machine::Machine;
use crate::measurement::memory::MemoryReport;
use crate::measurement::paired::SideBySide;
use crate::variants::{Variant, VARIANTS};

/// Everything a run measured and concluded.
pub struct Results<'a> {
    pub machine: &'a Machine,
    pub wasm_bytes: u64,
    pub empty_wasm_bytes: u64,
    pub workload: Value,
    pub analysis: Analysis<'a>,
    pub delays: &'a BTreeMap<Variant, Vec<u64>>,
    pub timelines: &'a BTreeMap<Variant, Vec<u64>>,
    pub ratios: Ratios,
    pub side_by_side: SideBySide,
    pub memory: Option<MemoryReport>,
    pub targets: Vec<Target>,
    pub notes: Vec<String>,
    /// None when no cost set-up ran.
    pub cost: Option<&'a crate::cost_model::report::CostModel>,
}

fn value(v: impl serde::Serialize) -> Result<Value, String> {
    serde_json::to_value(v).map_err(|e| e.to_string())
}

/// Writes `dir/latest.json`; returns its path.
pub fn write_json(r: &Results, dir: &Path, wall: Duration) -> Result<PathBuf, String> {
    let variants: Vec<Value> = VARIANTS
        .iter()
        .map(|v| {
            let rounds = r.analysis.rounds.get(v).map_or(&[][..], Vec::as_slice);
            json!({
                "key": v.key(),
                "label": v.label(),
                "rounds": rounds.iter().map(RoundFigures::flat).collect::<Vec<_>>(),
                "summary": summary_json(rounds),
                "delay_samples": r.delays.get(v).map_or(0, Vec::len),
            })
        })
        .collect();
    let timeline: Map<String, Value> = r
        .timelines
        .iter()
        .map(|(v, t)| {
            let ms: Vec<f64> = t.iter().map(|&us| us as f64 / 1000.0).collect();
            (v.key().to_string(), json!(ms))
        })
        .collect();
    let report = json!({
        "schema": "streamtap-bench/1",
        "machine": value(r.machine)?,
        "wasm": {"streamtap_bytes": r.wasm_bytes, "empty_filter_bytes": r.empty_wasm_bytes},
        "workload": r.workload,
        "variants": variants,
        "ratios": value(&r.ratios)?,
        "latency_side_by_side": value(&r.side_by_side)?,
        // Skipped memory runs (BENCH_MEMORY=0) leave an empty object.
        "memory": r.memory.as_ref().map_or(Ok(json!({})), value)?,
        "cost_model": r.cost.map_or(Ok(json!({})), value)?,
        "timeline_ms": timeline,
        "targets": value(&r.targets)?,
        "notes": r.notes,
        "chart": "latest.png",
        "wall_seconds": wall.as_secs_f64(),
    });
    let path = dir.join("latest.json");
    let text = serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?;
    fs::write(&path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

/// `median (min–max)`, scaled; `–` when there is none.
fn fmt_spread(s: Option<&Spread>, scale: f64, digits: usize) -> String {
    match s {
        Some(s) => format!(
            "{:.*} ({:.*}–{:.*})",
            digits,
            s.median * scale,
            digits,
            s.min * scale,
            digits,
            s.max * scale
        ),
        None => "–".to_string(),
    }
}

fn fmt_num(x: Option<f64>, scale: f64, digits: usize) -> String {
    x.map_or("–".to_string(), |x| format!("{:.*}", digits, x * scale))
}

/// One line per attempt, as the rounds go.
pub fn print_round_line(variant: Variant, round: usize, f: &RoundFigures, took: Duration) {
    let show = |v: Option<f64>, scale: f64, digits: usize| {
        v.map_or("-".to_string(), |x| format!("{:.*}", digits, x * scale))
    };
    let (s, p, m) = (&f.sat, &f.paced, &f.moderate);
    println!(
        "  r{round} {:<28} sat {:>7} ev/s {:>5} µs/ev worker {:>3}% bench {:>3}% other {:>3}% ev/chunk {:>4} ev/read {:>4} | \
         paced {:>5} µs/ev worker {:>3}% other {:>3}% ev/chunk {:>4} | delay p50/p99 {:>6}/{:>6} µs ttft {:>6} ms ({:.1} s)",
        variant.label(),
        show(s.events_per_s, 1.0, 0),
        show(s.cpu.envoy_cpu_us_per_event, 1.0, 2),
        show(s.cpu.envoy_worker_busy, 100.0, 0),
        show(s.cpu.bench_cores, 100.0, 0),
        show(s.cpu.other_cores, 100.0, 0),
        show(s.envoy_events_per_chunk, 1.0, 1),
        show(s.client_events_per_read, 1.0, 1),
        show(p.cpu.envoy_cpu_us_per_event, 1.0, 2),
        show(p.cpu.envoy_worker_busy, 100.0, 0),
        show(p.cpu.other_cores, 100.0, 0),
        show(p.envoy_events_per_chunk, 1.0, 2),
        show(m.delay_p50_us, 1.0, 0),
        show(m.delay_p99_us, 1.0, 0),
        show(m.ttft_p50_us, 0.001, 2),
        took.as_secs_f64(),
    );
}

pub fn print(r: &Results) {
    print_variants(&r.analysis);
    if let Some(cost) = r.cost {
        crate::cost_model::report::print(cost);
    }
    print_headlines(r);
    print_targets(&r.targets);
    if !r.notes.is_empty() {
        println!("\nnotes:");
        for n in &r.notes {
            println!("  - {n}");
        }
    }
}

fn print_variants(a: &Analysis) {
    let plain_eps = a.median(Variant::Plain, |f| f.sat.events_per_s);
    println!("results (median of the rounds, min–max in parentheses), as Markdown:\n");
    println!(
        "| variant | events/s at saturation | × plain | Envoy CPU µs/event, saturation | Envoy CPU µs/event, paced (1 event/chunk) | TTFT p50 / p99 ms | delay p50 / p99 µs | Envoy RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let present = VARIANTS.iter().filter(|v| a.rounds.contains_key(v));
    for &v in present.clone() {
        let med = |pick: Pick, scale, digits| fmt_num(a.median(v, pick), scale, digits);
        let vs_plain = a
            .median(v, |f| f.sat.events_per_s)
            .zip(plain_eps)
            .map_or("–".to_string(), |(x, y)| format!("{:.2}", x / y));
        println!(
            "| {} | {} | {} | {} | {} | {} / {} | {} / {} | {} |",
            v.label(),
            fmt_spread(a.spread(v, |f| f.sat.events_per_s).as_ref(), 1.0, 0),
            vs_plain,
            fmt_spread(
                a.spread(v, |f| f.sat.cpu.envoy_cpu_us_per_event).as_ref(),
                1.0,
                2
            ),
            fmt_spread(
                a.spread(v, |f| f.paced.cpu.envoy_cpu_us_per_event).as_ref(),
                1.0,
                2
            ),
            med(|f| f.moderate.ttft_p50_us, 0.001, 2),
            med(|f| f.moderate.ttft_p99_us, 0.001, 2),
            med(|f| f.moderate.delay_p50_us, 1.0, 0),
            med(|f| f.moderate.delay_p99_us, 1.0, 0),
            med(|f| f.envoy_rss_mb, 1.0, 1),
        );
    }
    println!("\nsaturation load, per variant (medians): Envoy worker busy, bench process, other, SSE events per Envoy body chunk:");
    for &v in present {
        let pct = |pick: Pick| fmt_num(a.median(v, pick), 100.0, 0) + "%";
        println!(
            "  {:<28} worker {:>4}  bench {:>4} (loadgen {:>4}, mock {:>4})  other {:>4}  events/chunk {:>5}  paced: worker {:>4}",
            v.label(),
            pct(|f| f.sat.cpu.envoy_worker_busy),
            pct(|f| f.sat.cpu.bench_cores),
            pct(|f| f.sat.cpu.bench_loadgen_cores),
            pct(|f| f.sat.cpu.bench_mock_cores),
            pct(|f| f.sat.cpu.other_cores),
            fmt_num(a.median(v, |f| f.sat.envoy_events_per_chunk), 1.0, 1),
            pct(|f| f.paced.cpu.envoy_worker_busy),
        );
    }
}

fn print_headlines(r: &Results) {
    let ratios = &r.ratios;
    println!("\nstreamtap, headline ratios (per-round pairs: median, min–max):");
    for (vs, label) in [
        (&ratios.vs_plain_envoy, "plain Envoy"),
        (&ratios.vs_empty_wasm, "near-empty wasm floor"),
        (&ratios.vs_sse_to_metadata, "native sse_to_metadata"),
    ] {
        println!(
            "  vs {label:<23} events/s × {}  CPU/event × {} (saturation), × {} (paced)",
            fmt_spread(vs.events_per_s.as_ref(), 1.0, 2),
            fmt_spread(vs.sat_cpu_per_event.as_ref(), 1.0, 2),
            fmt_spread(vs.paced_cpu_per_event.as_ref(), 1.0, 2),
        );
    }
    let sbs = &r.side_by_side;
    let added = &ratios.added_delay_over_plain_envoy_us;
    println!(
        "  added per-event delay over plain Envoy at moderate load: side by side, pooled p50 {:+.0} µs, p99 {:+.0} µs \
         (per repetition p50 {} µs, p99 {} µs); across the sequential runs p50 {} µs, p99 {} µs",
        sbs.pooled_added_p50_us.unwrap_or(f64::NAN),
        sbs.pooled_added_p99_us.unwrap_or(f64::NAN),
        fmt_spread(sbs.added_p50_us.as_ref(), 1.0, 0),
        fmt_spread(sbs.added_p99_us.as_ref(), 1.0, 0),
        fmt_spread(added.p50.as_ref(), 1.0, 0),
        fmt_spread(added.p99.as_ref(), 1.0, 0),
    );
    println!(
        "  CPU per event above the near-empty wasm floor: {} µs paced, {} µs at saturation",
        fmt_spread(
            ratios
                .streamtap_cpu_us_per_event_above_empty_wasm_paced
                .as_ref(),
            1.0,
            2
        ),
        fmt_spread(
            ratios
                .streamtap_cpu_us_per_event_above_empty_wasm_sat
                .as_ref(),
            1.0,
            2
        ),
    );
    print_price(
        "stream_health accounting",
        Variant::Streamtap,
        Variant::StreamtapNoHealth,
        &ratios.stream_health_price,
    );
    print_price(
        "the timeline (capture.timeline)",
        Variant::StreamtapTimeline,
        Variant::Streamtap,
        &ratios.timeline_price,
    );
    print_price(
        "the labelled GenAI stats (labelled_stats)",
        Variant::Streamtap,
        Variant::StreamtapNoLabels,
        &ratios.labelled_stats_price,
    );
    let m = r.memory.as_ref();
    let b = |x: Option<f64>| x.unwrap_or(f64::NAN);
    println!(
        "  memory per open stream: streamtap {:.0} bytes, {:+.0} over plain Envoy's {:.0}; .wasm {} bytes",
        b(m.and_then(|m| m.streamtap.short_per_stream_bytes)),
        b(m.and_then(|m| m.streamtap_extra_over_plain_per_stream_bytes)),
        b(m.and_then(|m| m.plain_envoy.short_per_stream_bytes)),
        r.wasm_bytes,
    );
}

/// A feature's price: `with` − `without`, and whether it is noise.
fn print_price(feature: &str, with: Variant, without: Variant, price: &HealthPrice) {
    println!(
        "  the price of {feature} ({} − {}, Envoy CPU µs/event, per-round pairs):",
        with.label(),
        without.label()
    );
    for (label, p) in [
        ("paced (≈1 event/chunk)", &price.paced_cpu_us_per_event),
        ("saturation", &price.sat_cpu_us_per_event),
    ] {
        println!("    {label:<23} {}", price_line(p, with, without));
    }
}

fn price_line(p: &PricedDifference, with: Variant, without: Variant) -> String {
    let Some(d) = p.difference.as_ref() else {
        return format!(
            "– (not both {} and {} in the rounds: the cost model prices it)",
            with.key(),
            without.key()
        );
    };
    let range = |x: Option<f64>| x.map_or("–".to_string(), |x| format!("{x:.2}"));
    let verdict = if p.within_noise == Some(true) {
        "within the rounds' spread (noise)"
    } else {
        "above the rounds' spread"
    };
    format!(
        "{:+.2} ({:+.2}–{:+.2}) µs/event, {} of {}'s; {verdict}: the rounds span {} µs ({}), {} µs ({})",
        d.median,
        d.min,
        d.max,
        p.share_of_a
            .map_or("–".to_string(), |s| format!("{:+.1}%", s * 100.0)),
        with.key(),
        range(p.a_rounds_range),
        with.key(),
        range(p.b_rounds_range),
        without.key(),
    )
}

fn print_targets(targets: &[Target]) {
    println!("\ntargets:");
    for t in targets {
        let verdict = match t.pass {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        let basis = t
            .basis
            .as_ref()
            .map_or(String::new(), |b| format!(" [{}]", b.text()));
        println!(
            "  [{verdict}] {} — measured {}{basis}",
            t.target,
            t.measured.map_or("–".to_string(), |x| format!("{x:.3}"))
        );
    }
}
