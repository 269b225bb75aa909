//! CPU accounting of a phase: Envoy's process and worker, this process's parts, and the rest of the machine, from procfs.

use crate::*;

/// CPU of this process's parts: the load generator (the main thread), the mock
/// upstream's threads and the collector's.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct BenchCpu {
    pub(crate) total: CpuTicks,
    pub(crate) loadgen: CpuTicks,
    pub(crate) mock: CpuTicks,
    pub(crate) collector: CpuTicks,
}

pub(crate) fn bench_cpu() -> BenchCpu {
    let me = std::process::id();
    let mut cpu = BenchCpu {
        total: procfs::process_cpu(me).unwrap_or_default(),
        ..BenchCpu::default()
    };
    for t in procfs::threads(me) {
        let slot = if t.tid == me {
            &mut cpu.loadgen
        } else if t.name.starts_with("mock-upstream") {
            &mut cpu.mock
        } else if t.name.starts_with("collector") {
            &mut cpu.collector
        } else {
            continue;
        };
        slot.user += t.cpu.user;
        slot.system += t.cpu.system;
    }
    cpu
}

/// Envoy's whole process and its worker thread (`wrk:worker_0`).
pub(crate) fn envoy_cpu(pid: u32) -> (CpuTicks, CpuTicks) {
    (
        procfs::process_cpu(pid).unwrap_or_default(),
        procfs::threads_cpu(pid, "wrk:"),
    )
}

/// CPU counters read at the start and at the end of a measured window.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CpuSnapshot {
    pub(crate) at: Instant,
    pub(crate) envoy: Option<(CpuTicks, CpuTicks)>,
    pub(crate) bench: BenchCpu,
    pub(crate) system: procfs::SystemCpu,
}

impl CpuSnapshot {
    pub(crate) fn take(pid: Option<u32>) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            envoy: pid.map(envoy_cpu),
            bench: bench_cpu(),
            system: procfs::system_cpu().unwrap_or_default(),
        }
    }
}

/// Puts the CPU figures of a window into `figures`, each name prefixed with
/// `phase`: Envoy's process and worker per event and busy share, this
/// process's parts, and the rest of the machine (other processes, and the
/// kernel's softirq work that no process is charged for).
pub(crate) fn put_cpu_figures(
    figures: &mut Figures,
    phase: &str,
    start: &CpuSnapshot,
    end: &CpuSnapshot,
    events: u64,
    tck: f64,
) {
    let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
    let mut put = |k: &str, v: f64| {
        if v.is_finite() {
            figures.insert(format!("{phase}_{k}"), v);
        }
    };
    let secs = |t: u64| t as f64 / tck;
    let events = events.max(1) as f64;
    let bench = end.bench.total.since(&start.bench.total).total();
    put("bench_cores", secs(bench) / wall);
    put(
        "bench_loadgen_cores",
        secs(end.bench.loadgen.since(&start.bench.loadgen).total()) / wall,
    );
    put(
        "bench_mock_cores",
        secs(end.bench.mock.since(&start.bench.mock).total()) / wall,
    );
    put(
        "bench_collector_cores",
        secs(end.bench.collector.since(&start.bench.collector).total()) / wall,
    );
    let sys = end.system.since(&start.system);
    put("machine_busy_cores", secs(sys.busy()) / wall);
    put("machine_softirq_cores", secs(sys.softirq) / wall);
    let mut envoy_ticks = 0;
    if let (Some((p0, w0)), Some((p1, w1))) = (start.envoy, end.envoy) {
        let process = p1.since(&p0);
        envoy_ticks = process.total();
        let worker = w1.since(&w0).total();
        put("envoy_cpu_s", secs(envoy_ticks));
        put("envoy_cores", secs(envoy_ticks) / wall);
        put("envoy_cpu_us_per_event", secs(envoy_ticks) * 1e6 / events);
        put(
            "envoy_cpu_s_per_100k_events",
            secs(envoy_ticks) * 1e5 / events,
        );
        put("envoy_worker_busy", secs(worker) / wall);
        put("envoy_worker_cpu_us_per_event", secs(worker) * 1e6 / events);
    }
    // Whatever else ran: other processes (a disturbed round) and softirq.
    let other = sys.busy() as f64 - sys.softirq as f64 - bench as f64 - envoy_ticks as f64;
    put("other_cores", (other / tck / wall).max(0.0));
}
