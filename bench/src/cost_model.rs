//! The cost model: Envoy CPU = a·calls + b·events + c·chunks, fitted per
//! set-up and round by least squares over workloads that vary the three
//! independently (two call lengths × two chunk shapes).
//!
//! a is what a call costs whatever its length (headers, the request, the
//! summary, filter state, the access log, the export), b what each SSE event
//! costs once it is in the VM, c what each body chunk costs (the host's entry
//! into the VM, `get_buffer`, the clock). Agent loops make many short calls,
//! so a matters as much as b.

/// One measured window.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    pub calls: f64,
    pub events: f64,
    pub chunks: f64,
    /// Envoy's CPU over the window, µs (its idle CPU taken out).
    pub cpu_us: f64,
}

/// The fitted costs, µs each.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Costs {
    pub per_call_us: f64,
    pub per_event_us: f64,
    pub per_chunk_us: f64,
}

impl Costs {
    /// `self − base`, coefficient by coefficient: the cost above a set-up.
    pub fn minus(&self, base: &Costs) -> Costs {
        Costs {
            per_call_us: self.per_call_us - base.per_call_us,
            per_event_us: self.per_event_us - base.per_event_us,
            per_chunk_us: self.per_chunk_us - base.per_chunk_us,
        }
    }

    /// What a call of `events` events in `chunks` chunks costs.
    pub fn call_us(&self, events: f64, chunks: f64) -> f64 {
        self.per_call_us + self.per_event_us * events + self.per_chunk_us * chunks
    }
}

/// Least squares over `samples` (at least three that vary the three counts
/// independently); each sample weighted by 1/cpu, so a long window does not
/// drown a short one (relative errors, as the CPU noise is). None when the
/// counts do not determine the three costs.
pub fn fit(samples: &[Sample]) -> Option<Costs> {
    let mut m = [[0.0f64; 3]; 3];
    let mut v = [0.0f64; 3];
    for s in samples {
        let x = [s.calls, s.events, s.chunks];
        let w = 1.0 / s.cpu_us.abs().max(1.0).powi(2);
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += w * x[i] * x[j];
            }
            v[i] += w * x[i] * s.cpu_us;
        }
    }
    let [a, b, c] = solve3(m, v)?;
    Some(Costs {
        per_call_us: a,
        per_event_us: b,
        per_chunk_us: c,
    })
}

/// Cramer's rule; None when the system is (nearly) singular.
fn solve3(m: [[f64; 3]; 3], v: [f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &[[f64; 3]; 3]| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1])
            - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let d = det(&m);
    let scale = m.iter().flatten().fold(0.0f64, |a, x| a.max(x.abs()));
    if !d.is_finite() || d.abs() <= 1e-12 * scale.powi(3) {
        return None;
    }
    let mut out = [0.0; 3];
    for (k, slot) in out.iter_mut().enumerate() {
        let mut mk = m;
        for (row, value) in mk.iter_mut().zip(v) {
            row[k] = value;
        }
        *slot = det(&mk) / d;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(calls: f64, events: f64, chunks: f64, costs: &Costs) -> Sample {
        Sample {
            calls,
            events,
            chunks,
            cpu_us: costs.per_call_us * calls
                + costs.per_event_us * events
                + costs.per_chunk_us * chunks,
        }
    }

    /// The four shapes the bench runs: 20 and 400 events a call, one event
    /// a chunk and ten.
    fn shapes(costs: &Costs) -> Vec<Sample> {
        vec![
            sample(4000.0, 80_000.0, 80_000.0, costs),
            sample(400.0, 160_000.0, 160_000.0, costs),
            sample(4000.0, 80_000.0, 8_000.0, costs),
            sample(200.0, 80_000.0, 8_000.0, costs),
        ]
    }

    #[test]
    fn exact_samples_give_the_costs_back() {
        let costs = Costs {
            per_call_us: 40.0,
            per_event_us: 1.5,
            per_chunk_us: 11.0,
        };
        let got = fit(&shapes(&costs)).unwrap();
        assert!((got.per_call_us - 40.0).abs() < 1e-6, "{got:?}");
        assert!((got.per_event_us - 1.5).abs() < 1e-9, "{got:?}");
        assert!((got.per_chunk_us - 11.0).abs() < 1e-9, "{got:?}");
        assert!((got.call_us(50.0, 50.0) - (40.0 + 75.0 + 550.0)).abs() < 1e-6);
    }

    #[test]
    fn noise_moves_the_costs_little_and_a_difference_is_kept() {
        let base = Costs {
            per_call_us: 30.0,
            per_event_us: 0.5,
            per_chunk_us: 10.0,
        };
        let more = Costs {
            per_call_us: 60.0,
            per_event_us: 1.5,
            per_chunk_us: 11.0,
        };
        // ±1% on each window, alternating.
        let noisy = |costs: &Costs| -> Vec<Sample> {
            shapes(costs)
                .into_iter()
                .enumerate()
                .map(|(i, mut s)| {
                    s.cpu_us *= if i % 2 == 0 { 1.01 } else { 0.99 };
                    s
                })
                .collect()
        };
        let diff = fit(&noisy(&more))
            .unwrap()
            .minus(&fit(&noisy(&base)).unwrap());
        assert!((diff.per_event_us - 1.0).abs() < 0.3, "{diff:?}");
        assert!((diff.per_call_us - 30.0).abs() < 15.0, "{diff:?}");
    }

    #[test]
    fn counts_that_do_not_vary_determine_nothing() {
        let costs = Costs {
            per_call_us: 1.0,
            per_event_us: 1.0,
            per_chunk_us: 1.0,
        };
        // Chunks always equal events: b and c cannot be told apart.
        let same = vec![
            sample(100.0, 1000.0, 1000.0, &costs),
            sample(10.0, 2000.0, 2000.0, &costs),
        ];
        assert_eq!(fit(&same), None);
        assert_eq!(fit(&[]), None);
    }
}

/// The cost model of a run: each set-up's fitted costs per round, and what
/// they are above plain Envoy's in the same round.
pub mod report {
    use std::collections::BTreeMap;

    use serde::Serialize;

    use super::{fit, Costs};
    use crate::analysis::{spread_of, Spread};
    use crate::measurement::cost::{ShapeRun, COST_CONNECTIONS, SHAPES};
    use crate::variants::{Variant, HOST_CALLS};

    /// Per set-up, per round: the shapes' windows.
    pub type Runs = BTreeMap<Variant, Vec<Vec<ShapeRun>>>;

    #[derive(Clone, Debug, Serialize)]
    pub struct CostSpreads {
        pub per_call_us: Option<Spread>,
        pub per_event_us: Option<Spread>,
        pub per_chunk_us: Option<Spread>,
        /// A 50-event call in 50 chunks (the rounds' workload), µs.
        pub call_of_50_us: Option<Spread>,
    }

    impl CostSpreads {
        fn of(costs: &[Costs]) -> CostSpreads {
            let pick = |f: fn(&Costs) -> f64| spread_of(&costs.iter().map(f).collect::<Vec<_>>());
            CostSpreads {
                per_call_us: pick(|c| c.per_call_us),
                per_event_us: pick(|c| c.per_event_us),
                per_chunk_us: pick(|c| c.per_chunk_us),
                call_of_50_us: pick(|c| c.call_us(50.0, 50.0)),
            }
        }
    }

    #[derive(Clone, Debug, Serialize)]
    pub struct VariantCosts {
        pub key: &'static str,
        pub label: &'static str,
        pub fitted: CostSpreads,
        /// Round by round minus plain Envoy's fit of that round.
        pub above_plain: Option<CostSpreads>,
        pub rounds: Vec<Vec<ShapeRun>>,
    }

    /// A target of issue 15 judged on the per-round figures: `pass` when
    /// every round meets it, `fail` when none does, else `within the noise`.
    #[derive(Clone, Debug, Serialize)]
    pub struct CostTarget {
        pub key: &'static str,
        pub target: String,
        pub measured: Option<Spread>,
        pub verdict: &'static str,
    }

    #[derive(Clone, Debug, Serialize)]
    pub struct CostModel {
        pub model: &'static str,
        pub connections: usize,
        pub shapes: Vec<crate::measurement::cost::Shape>,
        pub variants: Vec<VariantCosts>,
        pub targets: Vec<CostTarget>,
        /// The price of one request header read, µs per call: round by
        /// round, the body-reading floor with `HOST_CALLS` more reads minus
        /// the floor, over `HOST_CALLS`. What bounds a per-call cost.
        pub header_read_us: Option<Spread>,
    }

    fn fits(runs: &[Vec<ShapeRun>]) -> Vec<Option<Costs>> {
        runs.iter()
            .map(|shapes| fit(&shapes.iter().map(ShapeRun::sample).collect::<Vec<_>>()))
            .collect()
    }

    /// `values` against `limit` (at most).
    fn verdict(values: &[f64], limit: f64) -> &'static str {
        if values.is_empty() {
            "not measured"
        } else if values.iter().all(|v| *v <= limit) {
            "pass"
        } else if values.iter().all(|v| *v > limit) {
            "fail"
        } else {
            "within the noise"
        }
    }

    pub fn analyse(runs: &Runs) -> CostModel {
        let plain = runs
            .get(&Variant::Plain)
            .map(|r| fits(r))
            .unwrap_or_default();
        let mut above: BTreeMap<Variant, Vec<Costs>> = BTreeMap::new();
        let variants = runs
            .iter()
            .map(|(variant, rounds)| {
                let own = fits(rounds);
                let fitted: Vec<Costs> = own.iter().flatten().copied().collect();
                let diffs: Vec<Costs> = own
                    .iter()
                    .zip(&plain)
                    .filter_map(|(v, p)| Some(v.as_ref()?.minus(p.as_ref()?)))
                    .collect();
                above.insert(*variant, diffs.clone());
                VariantCosts {
                    key: variant.key(),
                    label: variant.label(),
                    fitted: CostSpreads::of(&fitted),
                    above_plain: (*variant != Variant::Plain && !diffs.is_empty())
                        .then(|| CostSpreads::of(&diffs)),
                    rounds: rounds.clone(),
                }
            })
            .collect();
        let floor = runs.get(&Variant::ReadingWasm).map(|r| fits(r));
        let reads = runs.get(&Variant::ReadingWasmHeaderReads).map(|r| fits(r));
        let header_read_us = floor.zip(reads).and_then(|(floor, reads)| {
            let per_read: Vec<f64> = floor
                .iter()
                .zip(&reads)
                .filter_map(|(f, r)| {
                    Some(
                        (r.as_ref()?.per_call_us - f.as_ref()?.per_call_us) / f64::from(HOST_CALLS),
                    )
                })
                .collect();
            spread_of(&per_read)
        });
        CostModel {
            header_read_us,
            model: "Envoy CPU = a·calls + b·events + c·chunks, least squares per set-up and round over the shapes",
            connections: COST_CONNECTIONS,
            shapes: SHAPES.to_vec(),
            variants,
            targets: targets(&above),
        }
    }

    fn targets(above: &BTreeMap<Variant, Vec<Costs>>) -> Vec<CostTarget> {
        let of = |v: Variant, f: fn(&Costs) -> f64| -> Vec<f64> {
            above
                .get(&v)
                .map_or(Vec::new(), |c| c.iter().map(f).collect())
        };
        let judged = |key, target: String, values: Vec<f64>, limit: f64| CostTarget {
            key,
            target,
            measured: spread_of(&values),
            verdict: verdict(&values, limit),
        };
        let ours = of(Variant::Streamtap, |c| c.per_event_us);
        let native = of(Variant::SseToMetadata, |c| c.per_event_us);
        // Per round: streamtap's per-event cost over half the native one's.
        let half: Vec<f64> = ours.iter().zip(&native).map(|(s, n)| s - n / 2.0).collect();
        vec![
            judged(
                "per_event_us_above_plain",
                "streamtap's per-event cost above plain Envoy <= 1.0 µs".to_string(),
                ours,
                1.0,
            ),
            judged(
                "per_call_us_above_plain",
                "streamtap's per-call cost above plain Envoy <= 25 µs (export, filter state, metrics on)".to_string(),
                of(Variant::Streamtap, |c| c.per_call_us),
                25.0,
            ),
            judged(
                "per_event_vs_half_native",
                "streamtap's per-event cost above plain <= half of native sse_to_metadata's (streamtap − native/2 <= 0, µs)".to_string(),
                half,
                0.0,
            ),
        ]
    }

    fn cell(s: Option<&Spread>, digits: usize) -> String {
        s.map_or("–".to_string(), |s| {
            format!(
                "{:.*} ({:.*}–{:.*})",
                digits, s.median, digits, s.min, digits, s.max
            )
        })
    }

    pub fn print(model: &CostModel) {
        println!(
            "\ncost model ({}; {} streams):",
            model.model, model.connections
        );
        println!(
            "| set-up | per call µs | per event µs | per chunk µs | above plain: per call | per event | per chunk | a 50-event call |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for v in &model.variants {
            let a = v.above_plain.as_ref();
            println!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                v.label,
                cell(v.fitted.per_call_us.as_ref(), 1),
                cell(v.fitted.per_event_us.as_ref(), 2),
                cell(v.fitted.per_chunk_us.as_ref(), 2),
                cell(a.and_then(|a| a.per_call_us.as_ref()), 1),
                cell(a.and_then(|a| a.per_event_us.as_ref()), 2),
                cell(a.and_then(|a| a.per_chunk_us.as_ref()), 2),
                cell(a.and_then(|a| a.call_of_50_us.as_ref()), 0),
            );
        }
        println!(
            "\na request header read (the body-reading floor with {HOST_CALLS} more per call, minus the floor, per read): {} µs per call",
            cell(model.header_read_us.as_ref(), 2)
        );
        println!("\ncost model targets (per round: pass if all rounds meet it, fail if none, else within the noise):");
        for t in &model.targets {
            println!(
                "  {:<26} {:<17} {}  [{}]",
                t.key,
                t.verdict,
                cell(t.measured.as_ref(), 2),
                t.target
            );
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn a_verdict_needs_every_round_on_one_side() {
            assert_eq!(verdict(&[0.5, 0.9], 1.0), "pass");
            assert_eq!(verdict(&[1.5, 1.1], 1.0), "fail");
            assert_eq!(verdict(&[0.5, 1.5], 1.0), "within the noise");
            assert_eq!(verdict(&[], 1.0), "not measured");
        }
    }
}
