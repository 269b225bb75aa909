//! CPU over a measured window, from `/proc` (testbed::procfs): Envoy's
//! process and worker, this process's parts, and the whole machine.

use std::time::Instant;

use super::figures::CpuFigures;
use testbed::procfs::{self, CpuTicks, SystemCpu};

/// CPU of this process's parts: the load generator (the main thread), the mock
/// upstream's threads and the collector's.
#[derive(Clone, Copy, Debug, Default)]
pub struct BenchCpu {
    pub total: CpuTicks,
    pub loadgen: CpuTicks,
    pub mock: CpuTicks,
    pub collector: CpuTicks,
}

pub fn bench_cpu() -> BenchCpu {
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
fn envoy_cpu(pid: u32) -> (CpuTicks, CpuTicks) {
    (
        procfs::process_cpu(pid).unwrap_or_default(),
        procfs::threads_cpu(pid, "wrk:"),
    )
}

/// CPU counters read at the start and at the end of a measured window.
#[derive(Clone, Copy, Debug)]
pub struct CpuSnapshot {
    at: Instant,
    envoy: Option<(CpuTicks, CpuTicks)>,
    bench: BenchCpu,
    system: SystemCpu,
}

impl CpuSnapshot {
    pub fn take(pid: Option<u32>) -> CpuSnapshot {
        CpuSnapshot {
            at: Instant::now(),
            envoy: pid.map(envoy_cpu),
            bench: bench_cpu(),
            system: procfs::system_cpu().unwrap_or_default(),
        }
    }

    /// The window from `self` to `end` that delivered `events`, with `tck`
    /// clock ticks a second: Envoy's process and worker per event and busy
    /// share, this process's parts, and the rest of the machine (other
    /// processes, and the kernel's softirq work no process is charged for).
    pub fn figures(&self, end: &CpuSnapshot, events: u64, tck: f64) -> CpuFigures {
        let start = self;
        let wall = end.at.duration_since(start.at).as_secs_f64().max(1e-9);
        let secs = |t: u64| t as f64 / tck;
        let cores = |t: u64| Some(secs(t) / wall);
        let events = events.max(1) as f64;
        let bench = end.bench.total.since(&start.bench.total).total();
        let sys = end.system.since(&start.system);
        let mut f = CpuFigures {
            bench_cores: cores(bench),
            bench_loadgen_cores: cores(end.bench.loadgen.since(&start.bench.loadgen).total()),
            bench_mock_cores: cores(end.bench.mock.since(&start.bench.mock).total()),
            bench_collector_cores: cores(end.bench.collector.since(&start.bench.collector).total()),
            machine_busy_cores: cores(sys.busy()),
            machine_softirq_cores: cores(sys.softirq),
            ..CpuFigures::default()
        };
        let mut envoy_ticks = 0;
        if let (Some((p0, w0)), Some((p1, w1))) = (start.envoy, end.envoy) {
            envoy_ticks = p1.since(&p0).total();
            let worker = w1.since(&w0).total();
            f.envoy_cpu_s = Some(secs(envoy_ticks));
            f.envoy_cores = cores(envoy_ticks);
            f.envoy_cpu_us_per_event = Some(secs(envoy_ticks) * 1e6 / events);
            f.envoy_cpu_s_per_100k_events = Some(secs(envoy_ticks) * 1e5 / events);
            f.envoy_worker_busy = cores(worker);
            f.envoy_worker_cpu_us_per_event = Some(secs(worker) * 1e6 / events);
        }
        // Whatever else ran: other processes (a disturbed round) and softirq.
        let other = sys.busy() as f64 - sys.softirq as f64 - bench as f64 - envoy_ticks as f64;
        f.other_cores = Some((other / tck / wall).max(0.0));
        f
    }
}
