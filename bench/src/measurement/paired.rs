//! Latency side by side: plain Envoy and Envoy + streamtap started together,
//! the moderate workload run against both at the same time (the second half
//! an interval out of phase), so that both see the same machine noise.

use std::time::Duration;

use crate::loadgen::{self, percentile, LoadReport, Stop};
use serde::Serialize;
use testbed::collector::Collector;
use testbed::envoy::{Envoy, EnvoyOptions, FilterVariant};
use testbed::procfs;
use testbed::upstream::MockUpstream;

use super::cpu::bench_cpu;
use crate::analysis::{spread_of, Spread};
use crate::settings::MODERATE_INTERVAL_MS;
use crate::workload::{self, check_errors};

/// `latency_side_by_side` in `latest.json`.
#[derive(Clone, Debug, Serialize)]
pub struct SideBySide {
    pub method: &'static str,
    pub pooled_added_p50_us: Option<f64>,
    pub pooled_added_p99_us: Option<f64>,
    pub repetitions: Vec<Repetition>,
    pub added_p50_us: Option<Spread>,
    pub added_p99_us: Option<Spread>,
    pub added_ttft_p50_us: Option<Spread>,
    pub pooled: Pooled,
}

#[derive(Clone, Debug, Serialize)]
pub struct Repetition {
    pub plain_envoy: Latency,
    pub streamtap: Latency,
    pub added_p50_us: f64,
    pub added_p99_us: f64,
    pub added_ttft_p50_us: f64,
    pub other_cores: f64,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct Latency {
    pub delay_p50_us: f64,
    pub delay_p99_us: f64,
    pub ttft_p50_us: f64,
}

/// Every repetition's events together, per set-up.
#[derive(Clone, Debug, Serialize)]
pub struct Pooled {
    pub plain_envoy: PooledDelays,
    pub streamtap: PooledDelays,
}

#[derive(Clone, Copy, Debug, Serialize)]
pub struct PooledDelays {
    pub samples: usize,
    pub delay_p50_us: Option<u64>,
    pub delay_p99_us: Option<u64>,
    pub delay_p999_us: Option<u64>,
}

impl Latency {
    fn of(r: &LoadReport) -> Latency {
        let mut d = r.delays_us.clone();
        d.sort_unstable();
        let mut t = r.ttft_us.clone();
        t.sort_unstable();
        let p = |v: &[u64], q| percentile(v, q).unwrap_or(0) as f64;
        Latency {
            delay_p50_us: p(&d, 0.50),
            delay_p99_us: p(&d, 0.99),
            ttft_p50_us: p(&t, 0.50),
        }
    }
}

impl PooledDelays {
    fn of(mut v: Vec<u64>) -> PooledDelays {
        v.sort_unstable();
        PooledDelays {
            samples: v.len(),
            delay_p50_us: percentile(&v, 0.50),
            delay_p99_us: percentile(&v, 0.99),
            delay_p999_us: percentile(&v, 0.999),
        }
    }
}

/// `reps` repetitions on fresh Envoys: per repetition delay p50/p99 and TTFT
/// p50 of each, and the differences; and the pooled percentiles.
pub fn paired_latency(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    reps: usize,
    streamtap_config: &str,
) -> Result<SideBySide, String> {
    let mut repetitions = Vec::new();
    let (mut plain_delays, mut tap_delays) = (Vec::new(), Vec::new());
    for rep in 0..reps {
        let (a, b, other_cores) = one_repetition(rt, upstream, streamtap_config)?;
        let (la, lb) = (Latency::of(&a), Latency::of(&b));
        println!(
            "  rep {rep}: plain Envoy delay p50/p99 {:.0}/{:.0} µs, streamtap {:.0}/{:.0} µs: \
             added {:+.0}/{:+.0} µs",
            la.delay_p50_us,
            la.delay_p99_us,
            lb.delay_p50_us,
            lb.delay_p99_us,
            lb.delay_p50_us - la.delay_p50_us,
            lb.delay_p99_us - la.delay_p99_us
        );
        plain_delays.extend(a.delays_us);
        tap_delays.extend(b.delays_us);
        repetitions.push(Repetition {
            added_p50_us: lb.delay_p50_us - la.delay_p50_us,
            added_p99_us: lb.delay_p99_us - la.delay_p99_us,
            added_ttft_p50_us: lb.ttft_p50_us - la.ttft_p50_us,
            plain_envoy: la,
            streamtap: lb,
            other_cores,
        });
    }
    let pooled = Pooled {
        plain_envoy: PooledDelays::of(plain_delays),
        streamtap: PooledDelays::of(tap_delays),
    };
    let added = |p: fn(&PooledDelays) -> Option<u64>| {
        Some(p(&pooled.streamtap)? as f64 - p(&pooled.plain_envoy)? as f64)
    };
    let col = |f: fn(&Repetition) -> f64| spread_of(&repetitions.iter().map(f).collect::<Vec<_>>());
    Ok(SideBySide {
        method: "plain Envoy and Envoy + streamtap running at the same time, the moderate workload against both at once",
        pooled_added_p50_us: added(|p| p.delay_p50_us),
        pooled_added_p99_us: added(|p| p.delay_p99_us),
        added_p50_us: col(|r| r.added_p50_us),
        added_p99_us: col(|r| r.added_p99_us),
        added_ttft_p50_us: col(|r| r.added_ttft_p50_us),
        repetitions,
        pooled,
    })
}

/// Both Envoys warmed up, then the moderate workload against both at once:
/// the two reports, and the cores other processes took meanwhile.
fn one_repetition(
    rt: &tokio::runtime::Runtime,
    upstream: &MockUpstream,
    streamtap_config: &str,
) -> Result<(LoadReport, LoadReport, f64), String> {
    let collector = Collector::start().map_err(|e| format!("collector: {e}"))?;
    let start = |f: FilterVariant| {
        Envoy::start(
            &EnvoyOptions::new(upstream.addr, collector.addr)
                .with_filter(f)
                .with_plugin_config(streamtap_config),
        )
    };
    let plain = start(FilterVariant::NoFilter)?;
    let tap = start(FilterVariant::Streamtap)?;
    let pids = [plain.pid(), tap.pid()];
    for target in [plain.listener, tap.listener] {
        let mut warm = workload::moderate(target);
        warm.stop = Stop::CallsPerConnection(1);
        warm.shape.interval_ms = 1;
        check_errors("paired warm-up", &rt.block_on(loadgen::run(&warm)))?;
    }
    let envoys_cpu = || -> u64 {
        pids.iter()
            .map(|p| p.and_then(procfs::process_cpu).unwrap_or_default().total())
            .sum()
    };
    let cpu0 = procfs::system_cpu().unwrap_or_default();
    let busy0 = envoys_cpu();
    let bench0 = bench_cpu().total.total();
    let (wa, wb) = (
        workload::moderate(plain.listener),
        workload::moderate(tap.listener),
    );
    let (a, b) = rt.block_on(async {
        let half = Duration::from_millis(MODERATE_INTERVAL_MS) / 2;
        tokio::join!(loadgen::run(&wa), async {
            tokio::time::sleep(half).await;
            loadgen::run(&wb).await
        })
    });
    let sys = procfs::system_cpu().unwrap_or_default().since(&cpu0);
    let busy1 = envoys_cpu();
    let other_ticks = sys.busy() as f64
        - sys.softirq as f64
        - (busy1 as f64 - busy0 as f64)
        - (bench_cpu().total.total() as f64 - bench0 as f64);
    check_errors("paired latency, plain Envoy", &a)?;
    check_errors("paired latency, streamtap", &b)?;
    let other_cores =
        (other_ticks / procfs::clock_ticks_per_second() as f64 / a.elapsed.as_secs_f64().max(1e-9))
            .max(0.0);
    Ok((a, b, other_cores))
}
