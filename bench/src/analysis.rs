//! From the rounds' figures to what they mean: spreads over the rounds,
//! per-round ratios between variants, the targets' verdicts, the notes.

use std::collections::BTreeMap;

use crate::loadgen::spread;
use serde::Serialize;

use crate::measurement::figures::{finite, Pick, RoundFigures};
use crate::measurement::memory::MemoryReport;
use crate::measurement::paired::SideBySide;
use crate::settings::*;
use crate::variants::{Variant, VARIANTS};

/// Median, min and max of a figure over the rounds, and the rounds' values.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Spread {
    pub median: f64,
    pub min: f64,
    pub max: f64,
    pub rounds: Vec<f64>,
}

/// `None` (`null` in the JSON) when there is no value.
pub fn spread_of(values: &[f64]) -> Option<Spread> {
    spread(values).map(|s| Spread {
        median: s.median,
        min: s.min,
        max: s.max,
        rounds: values.to_vec(),
    })
}

/// The kept round of every variant, in round order.
pub type Rounds = BTreeMap<Variant, Vec<RoundFigures>>;

/// Figures across the rounds of the variants.
pub struct Analysis<'a> {
    pub rounds: &'a Rounds,
}

impl Analysis<'_> {
    fn values(&self, v: Variant, pick: Pick) -> Vec<f64> {
        self.rounds
            .get(&v)
            .map(|r| r.iter().filter_map(|f| finite(pick(f))).collect())
            .unwrap_or_default()
    }

    pub fn spread(&self, v: Variant, pick: Pick) -> Option<Spread> {
        spread_of(&self.values(v, pick))
    }

    pub fn median(&self, v: Variant, pick: Pick) -> Option<f64> {
        spread(&self.values(v, pick)).map(|s| s.median)
    }

    pub fn max(&self, v: Variant, pick: Pick) -> Option<f64> {
        spread(&self.values(v, pick)).map(|s| s.max)
    }

    /// `f(a's figure, b's figure)` per round in which both have it.
    pub fn paired(&self, a: Variant, b: Variant, pick: Pick, f: fn(f64, f64) -> f64) -> Vec<f64> {
        let (Some(ra), Some(rb)) = (self.rounds.get(&a), self.rounds.get(&b)) else {
            return Vec::new();
        };
        ra.iter()
            .zip(rb)
            .filter_map(|(x, y)| Some(f(finite(pick(x))?, finite(pick(y))?)))
            .collect()
    }

    /// Envoy's worker was the limit at saturation (median of the rounds).
    fn saturated(&self, v: Variant) -> bool {
        self.median(v, |f| f.sat.cpu.envoy_worker_busy)
            .is_some_and(|b| b >= SATURATED_WORKER_BUSY)
    }
}

/// `summary` of a variant in `latest.json`: the spread of every figure.
pub fn summary_json(rounds: &[RoundFigures]) -> BTreeMap<String, Option<Spread>> {
    let flat: Vec<BTreeMap<String, f64>> = rounds.iter().map(RoundFigures::flat).collect();
    let mut keys: Vec<&String> = flat.iter().flat_map(|r| r.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .map(|k| {
            let values: Vec<f64> = flat.iter().filter_map(|r| r.get(k).copied()).collect();
            (k.clone(), spread_of(&values))
        })
        .collect()
}

pub fn ratio(x: f64, y: f64) -> f64 {
    x / y
}

pub fn minus(x: f64, y: f64) -> f64 {
    x - y
}

/// streamtap against one other variant, per round.
#[derive(Clone, Debug, Serialize)]
pub struct VsRatios {
    pub events_per_s: Option<Spread>,
    pub sat_cpu_per_event: Option<Spread>,
    pub sat_worker_cpu_per_event: Option<Spread>,
    pub paced_cpu_per_event: Option<Spread>,
    pub paced_worker_cpu_per_event: Option<Spread>,
}

#[derive(Clone, Debug, Serialize)]
pub struct AddedDelay {
    pub p99: Option<Spread>,
    pub p50: Option<Spread>,
}

/// `ratios` in `latest.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Ratios {
    pub vs_plain_envoy: VsRatios,
    pub vs_empty_wasm: VsRatios,
    pub vs_sse_to_metadata: VsRatios,
    pub added_delay_over_plain_envoy_us: AddedDelay,
    pub streamtap_cpu_us_per_event_above_empty_wasm_paced: Option<Spread>,
    pub streamtap_cpu_us_per_event_above_empty_wasm_sat: Option<Spread>,
    /// streamtap − streamtap with `stream_health` off, Envoy CPU µs per event.
    pub stream_health_price: HealthPrice,
    /// streamtap with `capture.timeline` on − streamtap, Envoy CPU µs per event.
    pub timeline_price: HealthPrice,
    /// streamtap − streamtap with `labelled_stats` off: the labelled GenAI
    /// stats' price per event (per call: × the workload's 50 events).
    pub labelled_stats_price: HealthPrice,
}

/// The price of the streaming-health accounting: streamtap's Envoy CPU µs per
/// event minus that of streamtap with `stream_health.enabled` false, per round.
#[derive(Clone, Debug, Serialize)]
pub struct HealthPrice {
    pub paced_cpu_us_per_event: PricedDifference,
    pub sat_cpu_us_per_event: PricedDifference,
}

/// A per-round difference `a − b` and whether it stands out of the noise.
#[derive(Clone, Debug, Serialize)]
pub struct PricedDifference {
    /// `a − b` per round: median, min, max.
    pub difference: Option<Spread>,
    /// The median difference over `a`'s median.
    pub share_of_a: Option<f64>,
    /// max − min of each variant's own rounds.
    pub a_rounds_range: Option<f64>,
    pub b_rounds_range: Option<f64>,
    /// True when the difference is within the rounds' spread: its per-round
    /// values straddle zero, or its median is no larger than either
    /// variant's own max − min over the rounds. None without figures.
    pub within_noise: Option<bool>,
}

impl PricedDifference {
    pub fn of(an: &Analysis, a: Variant, b: Variant, pick: Pick) -> PricedDifference {
        let difference = spread_of(&an.paired(a, b, pick, minus));
        let range = |v: Variant| an.spread(v, pick).map(|s| s.max - s.min);
        let (a_range, b_range) = (range(a), range(b));
        let within_noise = difference.as_ref().map(|d| {
            let straddles = d.min <= 0.0 && d.max >= 0.0;
            let noise = a_range.unwrap_or(0.0).max(b_range.unwrap_or(0.0));
            straddles || d.median.abs() <= noise
        });
        PricedDifference {
            share_of_a: difference
                .as_ref()
                .zip(an.median(a, pick))
                .map(|(d, m)| d.median / m),
            difference,
            a_rounds_range: a_range,
            b_rounds_range: b_range,
            within_noise,
        }
    }
}

impl Ratios {
    pub fn of(a: &Analysis) -> Ratios {
        let vs = |other: Variant| {
            let r = |pick: Pick| spread_of(&a.paired(Variant::Streamtap, other, pick, ratio));
            VsRatios {
                events_per_s: r(|f| f.sat.events_per_s),
                sat_cpu_per_event: r(|f| f.sat.cpu.envoy_cpu_us_per_event),
                sat_worker_cpu_per_event: r(|f| f.sat.cpu.envoy_worker_cpu_us_per_event),
                paced_cpu_per_event: r(|f| f.paced.cpu.envoy_cpu_us_per_event),
                paced_worker_cpu_per_event: r(|f| f.paced.cpu.envoy_worker_cpu_us_per_event),
            }
        };
        let above_empty =
            |pick: Pick| spread_of(&a.paired(Variant::Streamtap, Variant::EmptyWasm, pick, minus));
        let health_price = |pick: Pick| {
            PricedDifference::of(a, Variant::Streamtap, Variant::StreamtapNoHealth, pick)
        };
        let timeline_price = |pick: Pick| {
            PricedDifference::of(a, Variant::StreamtapTimeline, Variant::Streamtap, pick)
        };
        let labels_price = |pick: Pick| {
            PricedDifference::of(a, Variant::Streamtap, Variant::StreamtapNoLabels, pick)
        };
        Ratios {
            vs_plain_envoy: vs(Variant::Plain),
            vs_empty_wasm: vs(Variant::EmptyWasm),
            vs_sse_to_metadata: vs(Variant::SseToMetadata),
            added_delay_over_plain_envoy_us: AddedDelay {
                p99: spread_of(&added_over_plain(a, |f| f.moderate.delay_p99_us)),
                p50: spread_of(&added_over_plain(a, |f| f.moderate.delay_p50_us)),
            },
            streamtap_cpu_us_per_event_above_empty_wasm_paced: above_empty(|f| {
                f.paced.cpu.envoy_cpu_us_per_event
            }),
            streamtap_cpu_us_per_event_above_empty_wasm_sat: above_empty(|f| {
                f.sat.cpu.envoy_cpu_us_per_event
            }),
            stream_health_price: HealthPrice {
                paced_cpu_us_per_event: health_price(|f| f.paced.cpu.envoy_cpu_us_per_event),
                sat_cpu_us_per_event: health_price(|f| f.sat.cpu.envoy_cpu_us_per_event),
            },
            timeline_price: HealthPrice {
                paced_cpu_us_per_event: timeline_price(|f| f.paced.cpu.envoy_cpu_us_per_event),
                sat_cpu_us_per_event: timeline_price(|f| f.sat.cpu.envoy_cpu_us_per_event),
            },
            labelled_stats_price: HealthPrice {
                paced_cpu_us_per_event: labels_price(|f| f.paced.cpu.envoy_cpu_us_per_event),
                sat_cpu_us_per_event: labels_price(|f| f.sat.cpu.envoy_cpu_us_per_event),
            },
        }
    }
}

/// streamtap's figure minus plain Envoy's, per round (the sequential runs).
fn added_over_plain(a: &Analysis, pick: Pick) -> Vec<f64> {
    a.paired(Variant::Streamtap, Variant::Plain, pick, minus)
}

/// One target's verdict, and the basis it was judged on.
#[derive(Clone, Debug, Serialize)]
pub struct Target {
    pub key: &'static str,
    pub target: String,
    pub measured: Option<f64>,
    pub pass: Option<bool>,
    #[serde(flatten)]
    pub basis: Option<Basis>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum Basis {
    Throughput {
        basis: &'static str,
        events_per_s_ratio: Option<f64>,
        capacity_ratio_from_worker_cpu: Option<f64>,
    },
    SideBySide {
        basis: &'static str,
        per_repetition_added_p99_us: Option<Spread>,
        pooled_added_p99_us: Option<f64>,
        sequential_runs_added_p99_us: Option<f64>,
    },
}

impl Basis {
    pub fn text(&self) -> &'static str {
        match self {
            Basis::Throughput { basis, .. } | Basis::SideBySide { basis, .. } => basis,
        }
    }
}

impl Target {
    fn new(key: &'static str, target: String, measured: Option<f64>, pass: bool) -> Target {
        Target {
            key,
            target,
            measured,
            pass: measured.map(|_| pass),
            basis: None,
        }
    }
}

/// The targets (DESIGN.md / issue 3), judged on the medians of the per-round
/// (paired) figures.
pub fn targets(
    a: &Analysis,
    side_by_side: &SideBySide,
    memory: Option<&MemoryReport>,
    wasm_bytes: u64,
) -> Vec<Target> {
    // Issue 15: the median of the per-repetition differences, which holds
    // still where the pooled p99 follows the one worst repetition.
    let added = side_by_side.added_p99_us.as_ref().map(|s| s.median);
    let mut delay = Target::new(
        "added_delay_p99_us",
        format!("per-event delay p99 added over plain Envoy <= {TARGET_ADDED_P99_US} us at moderate load (median of the side-by-side repetitions)"),
        added,
        added.is_some_and(|x| x <= TARGET_ADDED_P99_US),
    );
    delay.basis = Some(Basis::SideBySide {
        basis: "plain Envoy and streamtap side by side, at the same time: the median over the repetitions of each one's p99 difference",
        per_repetition_added_p99_us: side_by_side.added_p99_us.clone(),
        pooled_added_p99_us: side_by_side.pooled_added_p99_us,
        sequential_runs_added_p99_us: median_of(&added_over_plain(a, |f| {
            f.moderate.delay_p99_us
        })),
    });
    let growth = memory.and_then(|m| m.capped_growth_per_stream_bytes);
    vec![
        throughput_target(
            a,
            Variant::EmptyWasm,
            TARGET_VS_EMPTY,
            "events_per_s_vs_empty_wasm",
            format!("streamtap events/s >= {TARGET_VS_EMPTY} x near-empty wasm"),
        ),
        throughput_target(
            a,
            Variant::ReadingWasm,
            TARGET_VS_EMPTY,
            "events_per_s_vs_reading_wasm",
            format!("streamtap events/s >= {TARGET_VS_EMPTY} x the body-reading wasm floor"),
        ),
        throughput_target(
            a,
            Variant::SseToMetadata,
            TARGET_VS_SSE,
            "events_per_s_vs_sse_to_metadata",
            format!("streamtap events/s >= {TARGET_VS_SSE} x native sse_to_metadata"),
        ),
        delay,
        Target::new(
            "memory_per_stream_independent_of_length",
            format!(
                "memory streamtap adds per open stream grows <= {TARGET_MEM_GROWTH_BYTES} bytes for a 10x longer response (content capped at {IDLE_CAPPED_CONTENT_BYTES} bytes; Envoy's own growth subtracted)"
            ),
            growth,
            growth.is_some_and(|x| x <= TARGET_MEM_GROWTH_BYTES),
        ),
        Target::new(
            "wasm_size_bytes",
            format!("streamtap.wasm <= {TARGET_WASM_BYTES} bytes"),
            Some(wasm_bytes as f64),
            wasm_bytes <= TARGET_WASM_BYTES,
        ),
    ]
}

fn median_of(v: &[f64]) -> Option<f64> {
    spread(v).map(|s| s.median)
}

/// Events/s compare Envoy only when Envoy's worker was the limit for both
/// variants; else the capacity ratio: the inverse ratio of worker CPU per event.
fn throughput_target(
    a: &Analysis,
    other: Variant,
    bound: f64,
    key: &'static str,
    text: String,
) -> Target {
    let eps = median_of(&a.paired(Variant::Streamtap, other, |f| f.sat.events_per_s, ratio));
    let capacity = median_of(&a.paired(
        other,
        Variant::Streamtap,
        |f| f.paced.cpu.envoy_worker_cpu_us_per_event,
        ratio,
    ));
    let (basis, measured) = if a.saturated(Variant::Streamtap) && a.saturated(other) {
        ("events/s at saturation, Envoy's worker the limit", eps)
    } else {
        (
            "capacity: inverse ratio of Envoy worker CPU per event at paced load (the bench did not saturate Envoy's worker)",
            capacity,
        )
    };
    let mut t = Target::new(key, text, measured, measured.is_some_and(|x| x >= bound));
    t.basis = Some(Basis::Throughput {
        basis,
        events_per_s_ratio: eps,
        capacity_ratio_from_worker_cpu: capacity,
    });
    t
}

/// Honest notes on what the numbers mean, from the numbers.
pub fn notes(a: &Analysis) -> Vec<String> {
    let pct = |x: Option<f64>| x.map_or("?".to_string(), |x| format!("{:.0}%", x * 100.0));
    let mut notes = Vec::new();
    let unsaturated: Vec<String> = VARIANTS
        .iter()
        .filter(|v| v.filter().is_some())
        .filter_map(|&v| {
            let busy = a.median(v, |f| f.sat.cpu.envoy_worker_busy)?;
            (busy < SATURATED_WORKER_BUSY).then(|| {
                format!(
                    "{} (worker {}, bench {})",
                    v.label(),
                    pct(Some(busy)),
                    pct(a.median(v, |f| f.sat.cpu.bench_cores))
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
        [
            a.max(v, |f| f.moderate.cpu.other_cores),
            a.max(v, |f| f.paced.cpu.other_cores),
            a.max(v, |f| f.sat.cpu.other_cores),
        ]
        .into_iter()
        .flatten()
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
    let med = |v: Variant, pick: Pick| a.median(v, pick).unwrap_or(f64::NAN);
    if let Some(epc) = a.median(Variant::Streamtap, |f| f.sat.envoy_events_per_chunk) {
        notes.push(format!(
            "at saturation (no pause between events) TCP coalesces the mock's one-write-per-event stream: streamtap saw {epc:.1} SSE events per \
             body chunk (the client read {:.1} events per read through plain Envoy, {:.1} through the \
             near-empty wasm filter); at paced load {:.2}, at moderate load {:.2}",
            med(Variant::Plain, |f| f.sat.client_events_per_read),
            med(Variant::EmptyWasm, |f| f.sat.client_events_per_read),
            med(Variant::Streamtap, |f| f.paced.envoy_events_per_chunk),
            med(Variant::Streamtap, |f| f.moderate.envoy_events_per_chunk),
        ));
    }
    if let Some(d) = a.median(Variant::Streamtap, |f| f.sat.streamtap.summaries_dropped) {
        if d > 0.0 {
            notes.push(format!(
                "streamtap dropped {d:.0} summaries during a saturation run (export queue or POST limits); the stream was unaffected"
            ));
        }
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_median_and_spread_per_figure() {
        let mut a = RoundFigures::default();
        a.sat.events_per_s = Some(1.0);
        let mut b = RoundFigures::default();
        b.sat.events_per_s = Some(3.0);
        b.envoy_rss_mb = Some(5.0);
        let s = summary_json(&[a, b]);
        let x = s["sat_events_per_s"].as_ref().unwrap();
        assert_eq!((x.median, x.min, x.max), (2.0, 1.0, 3.0));
        assert_eq!(x.rounds, vec![1.0, 3.0]);
        assert_eq!(s["envoy_rss_mb"].as_ref().unwrap().max, 5.0);
    }

    #[test]
    fn paired_figures_are_per_round_and_skip_missing_ones() {
        let round = |eps: Option<f64>| RoundFigures {
            sat: crate::measurement::figures::Saturation {
                events_per_s: eps,
                ..Default::default()
            },
            ..Default::default()
        };
        let rounds: Rounds = [
            (
                Variant::Streamtap,
                vec![round(Some(90.0)), round(Some(80.0)), round(None)],
            ),
            (
                Variant::EmptyWasm,
                vec![round(Some(100.0)), round(Some(f64::NAN)), round(Some(1.0))],
            ),
        ]
        .into_iter()
        .collect();
        let a = Analysis { rounds: &rounds };
        let r = a.paired(
            Variant::Streamtap,
            Variant::EmptyWasm,
            |f| f.sat.events_per_s,
            ratio,
        );
        assert_eq!(r, vec![0.9]);
        assert_eq!(
            a.median(Variant::Streamtap, |f| f.sat.events_per_s),
            Some(85.0)
        );
    }

    #[test]
    fn a_price_is_noise_when_it_is_within_the_rounds_spread() {
        let round = |paced: f64| RoundFigures {
            paced: crate::measurement::figures::Paced {
                cpu: crate::measurement::figures::CpuFigures {
                    envoy_cpu_us_per_event: Some(paced),
                    ..Default::default()
                },
                ..Default::default()
            },
            ..Default::default()
        };
        let rounds_of = |a: [f64; 3], b: [f64; 3]| -> Rounds {
            [
                (Variant::Streamtap, a.map(round).to_vec()),
                (Variant::StreamtapNoHealth, b.map(round).to_vec()),
            ]
            .into_iter()
            .collect()
        };
        let pick: Pick = |f| f.paced.cpu.envoy_cpu_us_per_event;
        let price = |r: &Rounds| {
            PricedDifference::of(
                &Analysis { rounds: r },
                Variant::Streamtap,
                Variant::StreamtapNoHealth,
                pick,
            )
        };
        // +1 µs every round, each variant's rounds within 0.2 µs: a price.
        let clear = rounds_of([25.0, 25.1, 25.2], [24.0, 24.1, 24.2]);
        let p = price(&clear);
        let d = p.difference.as_ref().unwrap();
        assert!((d.median - 1.0).abs() < 1e-9, "{d:?}");
        assert_eq!(p.within_noise, Some(false));
        assert!((p.share_of_a.unwrap() - 1.0 / 25.1).abs() < 1e-9);
        // +0.3 µs every round, but the rounds move by 1 µs: noise.
        let noisy = rounds_of([25.3, 24.3, 26.3], [25.0, 24.0, 26.0]);
        assert_eq!(price(&noisy).within_noise, Some(true));
        // Either sign across the rounds: noise.
        let mixed = rounds_of([25.0, 25.0, 25.0], [24.0, 24.0, 26.5]);
        assert_eq!(price(&mixed).within_noise, Some(true));
        // Without the variant: no figure, no verdict.
        let alone: Rounds = [(Variant::Streamtap, vec![round(25.0)])]
            .into_iter()
            .collect();
        let p = price(&alone);
        assert!(p.difference.is_none());
        assert_eq!(p.within_noise, None);
    }

    #[test]
    fn targets_serialize_flat_with_their_basis() {
        let mut t = Target::new("k", "text".into(), Some(1.0), true);
        t.basis = Some(Basis::Throughput {
            basis: "b",
            events_per_s_ratio: None,
            capacity_ratio_from_worker_cpu: Some(1.0),
        });
        let v = serde_json::to_value(&t).unwrap();
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "basis",
                "capacity_ratio_from_worker_cpu",
                "events_per_s_ratio",
                "key",
                "measured",
                "pass",
                "target"
            ]
        );
        assert_eq!(v["events_per_s_ratio"], serde_json::Value::Null);
        let plain = serde_json::to_value(Target::new("w", "t".into(), None, false)).unwrap();
        assert_eq!(plain["pass"], serde_json::Value::Null);
        assert!(plain.get("basis").is_none());
    }
}
