//! The figures of one variant in one round, by name: a field that is not
//! there does not compile. `latest.json` holds them flat (`sat_events_per_s`);
//! [`RoundFigures::flat`] is the one place that spells those keys.
//! A figure is `None` when it was not measured (no Envoy for `direct`) or
//! came out non-finite.

use std::collections::BTreeMap;

/// CPU over one measured window: Envoy's process and worker, this process's
/// parts, and the rest of the machine.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct CpuFigures {
    pub bench_cores: Option<f64>,
    pub bench_loadgen_cores: Option<f64>,
    pub bench_mock_cores: Option<f64>,
    pub bench_collector_cores: Option<f64>,
    pub machine_busy_cores: Option<f64>,
    pub machine_softirq_cores: Option<f64>,
    pub envoy_cpu_s: Option<f64>,
    pub envoy_cores: Option<f64>,
    pub envoy_cpu_us_per_event: Option<f64>,
    pub envoy_cpu_s_per_100k_events: Option<f64>,
    pub envoy_worker_busy: Option<f64>,
    pub envoy_worker_cpu_us_per_event: Option<f64>,
    /// Other processes (a disturbed round): busy minus Envoy, bench, softirq.
    pub other_cores: Option<f64>,
}

/// Moderate load: latency.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Moderate {
    pub calls: Option<f64>,
    pub events: Option<f64>,
    pub ttft_p50_us: Option<f64>,
    pub ttft_p99_us: Option<f64>,
    pub delay_p50_us: Option<f64>,
    pub delay_p90_us: Option<f64>,
    pub delay_p99_us: Option<f64>,
    pub delay_max_us: Option<f64>,
    pub envoy_chunks_per_call: Option<f64>,
    pub envoy_events_per_chunk: Option<f64>,
    pub cpu: CpuFigures,
}

/// Paced high load: CPU per event, one event per chunk (Envoy variants only).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Paced {
    pub events: Option<f64>,
    pub events_per_s: Option<f64>,
    pub delay_p50_us: Option<f64>,
    pub delay_p99_us: Option<f64>,
    pub envoy_events_per_chunk: Option<f64>,
    pub cpu: CpuFigures,
}

/// Saturation: throughput.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Saturation {
    pub seconds: Option<f64>,
    pub calls: Option<f64>,
    pub events: Option<f64>,
    pub events_per_s: Option<f64>,
    pub calls_per_s: Option<f64>,
    pub client_events_per_read: Option<f64>,
    pub envoy_chunks_per_call: Option<f64>,
    pub envoy_events_per_chunk: Option<f64>,
    pub summaries_received: Option<f64>,
    pub envoy_downstream_rq: Option<f64>,
    pub streamtap: StreamtapStats,
    pub cpu: CpuFigures,
}

/// streamtap's own Envoy counters over the saturation run.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct StreamtapStats {
    pub stream_events: Option<f64>,
    pub calls: Option<f64>,
    pub summaries_exported: Option<f64>,
    pub summaries_dropped: Option<f64>,
}

/// What one variant measured in one round.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RoundFigures {
    /// Which attempt was kept (0: the first; see `MAX_RETRIES`).
    pub attempt: Option<f64>,
    pub moderate: Moderate,
    pub paced: Paced,
    pub sat: Saturation,
    /// After the saturation run.
    pub envoy_rss_mb: Option<f64>,
    pub streamtap_parse_errors_total: Option<f64>,
}

/// A figure of a round, picked by a field path: `|f| f.sat.events_per_s`.
pub type Pick = fn(&RoundFigures) -> Option<f64>;

/// A measured value, kept only when finite (as `latest.json` has always done).
pub fn finite(v: Option<f64>) -> Option<f64> {
    v.filter(|x| x.is_finite())
}

impl RoundFigures {
    /// The most CPU other processes took in any measured phase, in cores.
    pub fn disturbance(&self) -> f64 {
        [
            self.moderate.cpu.other_cores,
            self.paced.cpu.other_cores,
            self.sat.cpu.other_cores,
        ]
        .into_iter()
        .flatten()
        .fold(0.0, f64::max)
    }

    /// The figures under their `latest.json` keys; absent ones left out.
    pub fn flat(&self) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        let mut put = |k: &str, v: Option<f64>| {
            if let Some(v) = finite(v) {
                out.insert(k.to_string(), v);
            }
        };
        let m = &self.moderate;
        put("attempt", self.attempt);
        put("moderate_calls", m.calls);
        put("moderate_events", m.events);
        put("ttft_p50_us", m.ttft_p50_us);
        put("ttft_p99_us", m.ttft_p99_us);
        put("delay_p50_us", m.delay_p50_us);
        put("delay_p90_us", m.delay_p90_us);
        put("delay_p99_us", m.delay_p99_us);
        put("delay_max_us", m.delay_max_us);
        put("moderate_envoy_chunks_per_call", m.envoy_chunks_per_call);
        put("moderate_envoy_events_per_chunk", m.envoy_events_per_chunk);
        let p = &self.paced;
        put("paced_events", p.events);
        put("paced_events_per_s", p.events_per_s);
        put("paced_delay_p50_us", p.delay_p50_us);
        put("paced_delay_p99_us", p.delay_p99_us);
        put("paced_envoy_events_per_chunk", p.envoy_events_per_chunk);
        let s = &self.sat;
        put("sat_seconds", s.seconds);
        put("sat_calls", s.calls);
        put("sat_events", s.events);
        put("sat_events_per_s", s.events_per_s);
        put("sat_calls_per_s", s.calls_per_s);
        put("sat_client_events_per_read", s.client_events_per_read);
        put("sat_envoy_chunks_per_call", s.envoy_chunks_per_call);
        put("sat_envoy_events_per_chunk", s.envoy_events_per_chunk);
        put("sat_summaries_received", s.summaries_received);
        put("sat_envoy_downstream_rq", s.envoy_downstream_rq);
        put("sat_streamtap_stream_events", s.streamtap.stream_events);
        put("sat_streamtap_calls", s.streamtap.calls);
        put(
            "sat_streamtap_summaries_exported",
            s.streamtap.summaries_exported,
        );
        put(
            "sat_streamtap_summaries_dropped",
            s.streamtap.summaries_dropped,
        );
        put("envoy_rss_mb", self.envoy_rss_mb);
        put(
            "streamtap_parse_errors_total",
            self.streamtap_parse_errors_total,
        );
        for (phase, cpu) in [("moderate", &m.cpu), ("paced", &p.cpu), ("sat", &s.cpu)] {
            cpu.flat_into(phase, &mut out);
        }
        out
    }
}

impl CpuFigures {
    fn flat_into(&self, phase: &str, out: &mut BTreeMap<String, f64>) {
        for (k, v) in [
            ("bench_cores", self.bench_cores),
            ("bench_loadgen_cores", self.bench_loadgen_cores),
            ("bench_mock_cores", self.bench_mock_cores),
            ("bench_collector_cores", self.bench_collector_cores),
            ("machine_busy_cores", self.machine_busy_cores),
            ("machine_softirq_cores", self.machine_softirq_cores),
            ("envoy_cpu_s", self.envoy_cpu_s),
            ("envoy_cores", self.envoy_cores),
            ("envoy_cpu_us_per_event", self.envoy_cpu_us_per_event),
            (
                "envoy_cpu_s_per_100k_events",
                self.envoy_cpu_s_per_100k_events,
            ),
            ("envoy_worker_busy", self.envoy_worker_busy),
            (
                "envoy_worker_cpu_us_per_event",
                self.envoy_worker_cpu_us_per_event,
            ),
            ("other_cores", self.other_cores),
        ] {
            if let Some(v) = finite(v) {
                out.insert(format!("{phase}_{k}"), v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key of a streamtap round in the `latest.json` before the figures
    /// were typed: the file's shape is kept.
    const KEYS_BEFORE: &str = "attempt delay_max_us delay_p50_us delay_p90_us delay_p99_us envoy_rss_mb \
        moderate_calls moderate_envoy_chunks_per_call moderate_envoy_events_per_chunk moderate_events \
        paced_delay_p50_us paced_delay_p99_us paced_envoy_events_per_chunk paced_events paced_events_per_s \
        sat_calls sat_calls_per_s sat_client_events_per_read sat_envoy_chunks_per_call \
        sat_envoy_downstream_rq sat_envoy_events_per_chunk sat_events sat_events_per_s sat_seconds \
        sat_streamtap_calls sat_streamtap_stream_events sat_streamtap_summaries_dropped \
        sat_streamtap_summaries_exported sat_summaries_received streamtap_parse_errors_total \
        ttft_p50_us ttft_p99_us";
    const CPU_KEYS: &str =
        "bench_cores bench_loadgen_cores bench_mock_cores bench_collector_cores \
        machine_busy_cores machine_softirq_cores envoy_cpu_s envoy_cores envoy_cpu_us_per_event \
        envoy_cpu_s_per_100k_events envoy_worker_busy envoy_worker_cpu_us_per_event other_cores";

    fn all(v: f64) -> RoundFigures {
        let cpu = CpuFigures {
            bench_cores: Some(v),
            bench_loadgen_cores: Some(v),
            bench_mock_cores: Some(v),
            bench_collector_cores: Some(v),
            machine_busy_cores: Some(v),
            machine_softirq_cores: Some(v),
            envoy_cpu_s: Some(v),
            envoy_cores: Some(v),
            envoy_cpu_us_per_event: Some(v),
            envoy_cpu_s_per_100k_events: Some(v),
            envoy_worker_busy: Some(v),
            envoy_worker_cpu_us_per_event: Some(v),
            other_cores: Some(v),
        };
        let s = Some(v);
        RoundFigures {
            attempt: s,
            moderate: Moderate {
                calls: s,
                events: s,
                ttft_p50_us: s,
                ttft_p99_us: s,
                delay_p50_us: s,
                delay_p90_us: s,
                delay_p99_us: s,
                delay_max_us: s,
                envoy_chunks_per_call: s,
                envoy_events_per_chunk: s,
                cpu,
            },
            paced: Paced {
                events: s,
                events_per_s: s,
                delay_p50_us: s,
                delay_p99_us: s,
                envoy_events_per_chunk: s,
                cpu,
            },
            sat: Saturation {
                seconds: s,
                calls: s,
                events: s,
                events_per_s: s,
                calls_per_s: s,
                client_events_per_read: s,
                envoy_chunks_per_call: s,
                envoy_events_per_chunk: s,
                summaries_received: s,
                envoy_downstream_rq: s,
                streamtap: StreamtapStats {
                    stream_events: s,
                    calls: s,
                    summaries_exported: s,
                    summaries_dropped: s,
                },
                cpu,
            },
            envoy_rss_mb: s,
            streamtap_parse_errors_total: s,
        }
    }

    #[test]
    fn flat_keys_are_the_json_keys_of_before() {
        let mut want: Vec<String> = KEYS_BEFORE.split_whitespace().map(String::from).collect();
        for phase in ["moderate", "paced", "sat"] {
            want.extend(CPU_KEYS.split_whitespace().map(|k| format!("{phase}_{k}")));
        }
        want.sort();
        let got: Vec<String> = all(1.0).flat().into_keys().collect();
        assert_eq!(got, want);
    }

    #[test]
    fn absent_and_non_finite_figures_are_left_out() {
        assert!(RoundFigures::default().flat().is_empty());
        assert!(all(f64::NAN).flat().is_empty());
        assert!(all(f64::INFINITY).flat().is_empty());
    }

    #[test]
    fn disturbance_is_the_worst_phase() {
        let mut f = RoundFigures::default();
        assert_eq!(f.disturbance(), 0.0);
        f.paced.cpu.other_cores = Some(0.3);
        f.sat.cpu.other_cores = Some(0.1);
        assert_eq!(f.disturbance(), 0.3);
    }
}
