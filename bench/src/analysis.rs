//! From rounds to results: spreads over rounds, the targets and the notes on what the numbers say.

use crate::*;

/// The most CPU other processes took in any measured phase of a run, in cores.
pub(crate) fn disturbance(f: &Figures) -> f64 {
    ["moderate", "paced", "sat"]
        .iter()
        .filter_map(|p| f.get(&format!("{p}_other_cores")).copied())
        .fold(0.0, f64::max)
}

/// Body chunks and SSE events per call streamtap saw, from its summaries
/// (`chunks`, `events`; completed calls only): `None` when no summary says.
/// (The near-empty filter's `{"chunks":N}` records are not used: its export,
/// 64 records per 200 ms tick, lags seconds behind a saturation run, so they
/// cannot be told apart by phase.)
pub(crate) fn chunk_counts(
    records: &[Value],
    events_per_call: usize,
) -> (Option<f64>, Option<f64>) {
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

pub(crate) fn opt_div(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some(a / b),
        _ => None,
    }
}

pub(crate) fn spread_json(values: &[f64]) -> Value {
    match spread(values) {
        Some(s) => json!({"median": s.median, "min": s.min, "max": s.max, "rounds": values}),
        None => Value::Null,
    }
}

/// Median, min and max over the rounds of every figure.
pub(crate) fn summarize(rounds: &[Figures]) -> BTreeMap<String, Value> {
    let mut keys: Vec<&String> = rounds.iter().flat_map(|r| r.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let values: Vec<f64> = rounds.iter().filter_map(|r| r.get(k).copied()).collect();
            (k.clone(), spread_json(&values))
        })
        .collect()
}

pub(crate) fn target(
    key: &str,
    text: &str,
    measured: Option<f64>,
    pass: impl Fn(f64) -> bool,
) -> Value {
    json!({
        "key": key,
        "target": text,
        "measured": measured,
        "pass": measured.map(pass),
    })
}

pub(crate) fn opt_sub(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    Some(a? - b?)
}

/// Honest notes on what the numbers mean, from the numbers.
pub(crate) fn notes(summaries: &BTreeMap<Variant, BTreeMap<String, Value>>) -> Vec<String> {
    let med = |v: Variant, k: &str| {
        summaries
            .get(&v)
            .and_then(|s| s.get(k))
            .and_then(|x| x["median"].as_f64())
    };
    let pct = |x: Option<f64>| x.map_or("?".to_string(), |x| format!("{:.0}%", x * 100.0));
    let mut notes = Vec::new();
    let unsaturated: Vec<String> = VARIANTS
        .iter()
        .filter(|v| v.filter().is_some())
        .filter_map(|v| {
            let busy = med(*v, "sat_envoy_worker_busy")?;
            (busy < SATURATED_WORKER_BUSY).then(|| {
                format!(
                    "{} (worker {}, bench {})",
                    v.label(),
                    pct(Some(busy)),
                    pct(med(*v, "sat_bench_cores"))
                )
            })
        })
        .collect();
    if !unsaturated.is_empty() {
        notes.push(format!(
            "the load generator + mock upstream (one process, sharing the 2 cores with Envoy) did not keep \
             Envoy's worker >= {:.0}% busy at saturation for: {}; there, events/s measure the bench as much as \
             Envoy: compare Envoy's CPU per event instead",
            SATURATED_WORKER_BUSY * 100.0,
            unsaturated.join(", ")
        ));
    }
    let worst = |v: Variant| {
        ["moderate", "paced", "sat"]
            .iter()
            .filter_map(|p| {
                summaries
                    .get(&v)
                    .and_then(|s| s.get(&format!("{p}_other_cores")))
                    .and_then(|x| x["max"].as_f64())
            })
            .fold(0.0, f64::max)
    };
    let disturbed: Vec<String> = VARIANTS
        .iter()
        .filter(|v| worst(**v) > DISTURBED_OTHER_CORES)
        .map(|v| format!("{} (up to {})", v.label(), pct(Some(worst(*v)))))
        .collect();
    if !disturbed.is_empty() {
        notes.push(format!(
            "other processes used CPU during some runs even after re-running them (share of a core): {}; \
             those figures are noisier",
            disturbed.join(", ")
        ));
    }
    if let Some(epc) = med(Variant::Streamtap, "sat_envoy_events_per_chunk") {
        notes.push(format!(
            "at saturation (no pause between events) TCP coalesces the mock's one-write-per-event stream: streamtap saw {epc:.1} SSE events per \
             body chunk (the client read {:.1} events per read through plain Envoy, {:.1} through the \
             near-empty wasm filter); at paced load {:.2}, at moderate load {:.2}",
            med(Variant::Plain, "sat_client_events_per_read").unwrap_or(f64::NAN),
            med(Variant::EmptyWasm, "sat_client_events_per_read").unwrap_or(f64::NAN),
            med(Variant::Streamtap, "paced_envoy_events_per_chunk").unwrap_or(f64::NAN),
            med(Variant::Streamtap, "moderate_envoy_events_per_chunk").unwrap_or(f64::NAN),
        ));
    }
    if let Some(d) = med(Variant::Streamtap, "sat_streamtap_summaries_dropped") {
        if d > 0.0 {
            notes.push(format!(
                "streamtap dropped {d:.0} summaries during a saturation run (export queue or POST limits); the stream was unaffected"
            ));
        }
    }
    notes
}
