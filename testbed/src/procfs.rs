//! What `/proc` says about a process: CPU time, resident memory, threads, and
//! the machine's CPU model. Used by `make bench` to measure Envoy (and itself)
//! from outside, without instrumenting either.
//!
//! CPU times come from `/proc/<pid>/stat` (`utime` + `stime`, in clock ticks of
//! `1/CLK_TCK` s, 10 ms on Linux), so measure over seconds, not milliseconds.

use std::fs;
use std::path::Path;
use std::process::Command;

/// CPU time of a process or thread, in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTicks {
    pub user: u64,
    pub system: u64,
}

impl CpuTicks {
    pub fn total(&self) -> u64 {
        self.user + self.system
    }

    /// Ticks spent since `earlier` (0 if the counters went backwards).
    pub fn since(&self, earlier: &CpuTicks) -> CpuTicks {
        CpuTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// `utime` and `stime` (fields 14 and 15) of a `/proc/<pid>/stat` line. The
/// command name (field 2) is in parentheses and may itself hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn parse_stat_cpu(stat: &str) -> Option<CpuTicks> {
    let after_comm = stat.get(stat.rfind(')')? + 1..)?;
    // After the name: state(3) ppid(4) ... utime(14) stime(15).
    let mut fields = after_comm.split_whitespace().skip(11);
    let user = fields.next()?.parse().ok()?;
    let system = fields.next()?.parse().ok()?;
    Some(CpuTicks { user, system })
}

/// Resident bytes of the Wasm linear memories in a `/proc/<pid>/smaps` text.
///
/// V8 reserves each Wasm instance's memory as one large region (8 GiB and
/// more, for bounds-check-free access) and makes its first pages read-write
/// as the memory grows: a `rw-p` anonymous mapping directly followed by a
/// `---p` reservation of at least 4 GiB. The sum of those `rw-p` mappings'
/// `Rss`.
pub fn parse_wasm_memory_rss(smaps: &str) -> u64 {
    struct Vma {
        start: u64,
        end: u64,
        perms: String,
        anonymous: bool,
        rss_kb: u64,
    }
    let mut vmas: Vec<Vma> = Vec::new();
    for line in smaps.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16)) {
                let perms = parts.next().unwrap_or("").to_string();
                // offset, dev, inode, then an optional path.
                let inode = parts.nth(2).unwrap_or("0");
                let path = parts.next();
                vmas.push(Vma {
                    start,
                    end,
                    perms,
                    anonymous: inode == "0" && path.is_none(),
                    rss_kb: 0,
                });
                continue;
            }
        }
        if let Some(rest) = line.strip_prefix("Rss:") {
            if let (Some(v), Some(kb)) = (
                vmas.last_mut(),
                rest.split_whitespace().next().and_then(|x| x.parse().ok()),
            ) {
                v.rss_kb = kb;
            }
        }
    }
    const RESERVATION: u64 = 4 << 30;
    vmas.windows(2)
        .filter(|w| {
            w[0].perms.starts_with("rw")
                && w[0].anonymous
                && w[1].perms.starts_with("---")
                && w[0].end == w[1].start
                && w[1].end - w[1].start >= RESERVATION
        })
        .map(|w| w[0].rss_kb * 1024)
        .sum()
}

/// Resident bytes of the Wasm linear memories of process `pid`.
pub fn wasm_memory_rss(pid: u32) -> Option<u64> {
    Some(parse_wasm_memory_rss(
        &fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?,
    ))
}

/// `VmRSS` of a `/proc/<pid>/status` text, in bytes.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let mut parts = line.trim_start_matches("VmRSS:").split_whitespace();
    let value: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | None => Some(value * 1024),
        Some(_) => None,
    }
}

/// The first `model name` of a `/proc/cpuinfo` text.
pub fn parse_cpu_model(cpuinfo: &str) -> Option<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

/// CPU ticks of process `pid` (all its threads).
pub fn process_cpu(pid: u32) -> Option<CpuTicks> {
    parse_stat_cpu(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Resident set size of process `pid`, in bytes.
pub fn process_rss(pid: u32) -> Option<u64> {
    parse_status_rss(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

/// One thread of a process: its name (`comm`) and CPU ticks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub cpu: CpuTicks,
}

/// Every thread of process `pid` (threads that exit while being read are skipped).
pub fn threads(pid: u32) -> Vec<ThreadCpu> {
    let dir = format!("/proc/{pid}/task");
    let Ok(entries) = fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<ThreadCpu> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let tid: u32 = e.file_name().to_str()?.parse().ok()?;
            let path = Path::new(&dir).join(tid.to_string());
            let name = fs::read_to_string(path.join("comm")).ok()?;
            let cpu = parse_stat_cpu(&fs::read_to_string(path.join("stat")).ok()?)?;
            Some(ThreadCpu {
                tid,
                name: name.trim().to_string(),
                cpu,
            })
        })
        .collect();
    out.sort_by_key(|t| t.tid);
    out
}

/// The run time in nanoseconds a `/proc/.../schedstat` line gives (its
/// first field).
pub fn parse_schedstat_ns(schedstat: &str) -> Option<u64> {
    schedstat.split_whitespace().next()?.parse().ok()
}

/// Nanoseconds the threads of `pid` have run on a CPU, summed over
/// `/proc/<pid>/task/*/schedstat`: far finer than the 10 ms ticks of `stat`,
/// so a window of a second resolves a per-call cost of microseconds.
pub fn process_run_ns(pid: u32) -> Option<u64> {
    let dir = format!("/proc/{pid}/task");
    let entries = fs::read_dir(&dir).ok()?;
    let mut total = 0u64;
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path().join("schedstat");
        if let Some(ns) = fs::read_to_string(path)
            .ok()
            .as_deref()
            .and_then(parse_schedstat_ns)
        {
            total += ns;
        }
    }
    Some(total)
}

/// CPU ticks of the threads of `pid` whose name starts with `prefix`, summed.
pub fn threads_cpu(pid: u32, prefix: &str) -> CpuTicks {
    threads(pid)
        .iter()
        .filter(|t| t.name.starts_with(prefix))
        .fold(CpuTicks::default(), |acc, t| CpuTicks {
            user: acc.user + t.cpu.user,
            system: acc.system + t.cpu.system,
        })
}

/// The whole machine's CPU time (first line of `/proc/stat`), in clock ticks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SystemCpu {
    pub user: u64,
    pub nice: u64,
    pub system: u64,
    pub idle: u64,
    pub iowait: u64,
    pub irq: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl SystemCpu {
    /// Ticks not idle (nor waiting for I/O), of all CPUs.
    pub fn busy(&self) -> u64 {
        self.user + self.nice + self.system + self.irq + self.softirq + self.steal
    }

    pub fn since(&self, earlier: &SystemCpu) -> SystemCpu {
        SystemCpu {
            user: self.user.saturating_sub(earlier.user),
            nice: self.nice.saturating_sub(earlier.nice),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            iowait: self.iowait.saturating_sub(earlier.iowait),
            irq: self.irq.saturating_sub(earlier.irq),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// The `cpu` line of a `/proc/stat` text.
pub fn parse_system_cpu(stat: &str) -> Option<SystemCpu> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().ok())
        .collect::<Option<Vec<u64>>>()?;
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    if v.len() < 4 {
        return None;
    }
    Some(SystemCpu {
        user: get(0),
        nice: get(1),
        system: get(2),
        idle: get(3),
        iowait: get(4),
        irq: get(5),
        softirq: get(6),
        steal: get(7),
    })
}

/// The machine's CPU time so far.
pub fn system_cpu() -> Option<SystemCpu> {
    parse_system_cpu(&fs::read_to_string("/proc/stat").ok()?)
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 when that cannot be run).
pub fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// The machine's CPU model, from `/proc/cpuinfo`.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| parse_cpu_model(&s))
        .unwrap_or_else(|| "unknown".to_string())
}

/// The running kernel's release (`/proc/sys/kernel/osrelease`).
pub fn kernel_release() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// Total memory, from `/proc/meminfo`, in bytes.
pub fn mem_total() -> Option<u64> {
    let text = fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedstat_run_time_is_its_first_field() {
        assert_eq!(parse_schedstat_ns("123456789 1000 17\n"), Some(123_456_789));
        assert_eq!(parse_schedstat_ns(""), None);
        let me = process_run_ns(std::process::id()).unwrap();
        assert!(me > 0, "this process has run");
    }

    #[test]
    fn stat_cpu_counts_fields_after_the_last_parenthesis() {
        let line = "28462 (cat) R 28419 28419 21610 0 -1 4194304 99 0 0 0 17 5 0 0 20 0 1 0 107427 3133440 359 18446744073709551615";
        assert_eq!(
            parse_stat_cpu(line),
            Some(CpuTicks {
                user: 17,
                system: 5
            })
        );
        // A name with spaces and parentheses does not shift the fields.
        let odd = "7 (wrk:(worker) 0) S 1 1 1 0 -1 0 0 0 0 0 1234 56 0 0";
        assert_eq!(parse_stat_cpu(odd).map(|c| c.total()), Some(1290));
        assert_eq!(parse_stat_cpu("7 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu("garbage"), None);
    }

    #[test]
    fn cpu_ticks_since_never_goes_negative() {
        let a = CpuTicks {
            user: 10,
            system: 4,
        };
        let b = CpuTicks {
            user: 25,
            system: 3,
        };
        assert_eq!(
            b.since(&a),
            CpuTicks {
                user: 15,
                system: 0
            }
        );
    }

    #[test]
    fn system_cpu_is_the_cpu_line() {
        let stat = "cpu  100 5 50 1000 7 1 9 3 0 0\ncpu0 50 2 25 500 3 0 4 1 0 0\nintr 1 2\n";
        let c = parse_system_cpu(stat).unwrap();
        assert_eq!((c.user, c.nice, c.system, c.idle), (100, 5, 50, 1000));
        assert_eq!((c.iowait, c.irq, c.softirq, c.steal), (7, 1, 9, 3));
        assert_eq!(c.busy(), 100 + 5 + 50 + 1 + 9 + 3);
        let later = SystemCpu {
            idle: 1200,
            user: 150,
            ..c
        };
        assert_eq!(later.since(&c).busy(), 50);
        assert_eq!(later.since(&c).idle, 200);
        assert_eq!(parse_system_cpu("cpu0 1 2 3 4\n"), None);
        assert_eq!(parse_system_cpu("cpu  1 x 3 4\n"), None);
        assert!(system_cpu().unwrap().busy() + system_cpu().unwrap().idle > 0);
    }

    #[test]
    fn status_rss_is_in_bytes() {
        let status = "Name:\tenvoy\nVmHWM:\t  99999 kB\nVmRSS:\t   51234 kB\nThreads:\t12\n";
        assert_eq!(parse_status_rss(status), Some(51234 * 1024));
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
        assert_eq!(parse_status_rss("VmRSS:\t12 MB\n"), None);
    }

    #[test]
    fn wasm_memory_is_the_rw_head_of_a_huge_reservation() {
        let smaps = "\
558ddcc00000-558ddcc60000 rw-p 00000000 00:00 0 
Size:                384 kB
Rss:                  28 kB
7f452a380000-7f452a490000 rw-p 00000000 00:00 0 
Size:               1088 kB
Rss:                  32 kB
7f452a490000-7f472a380000 ---p 00000000 00:00 0 
Size:            8387520 kB
Rss:                   0 kB
7f475a380000-7f475a490000 rw-p 00000000 00:00 0 
Size:               1088 kB
Rss:                 100 kB
7f475a490000-7f495a380000 ---p 00000000 00:00 0 
Size:            8387520 kB
Rss:                   0 kB
7f4960000000-7f4960100000 rw-p 00000000 08:01 1234   /usr/lib/x.so
Size:               1024 kB
Rss:                1024 kB
7f4960100000-7f4a60100000 ---p 00000000 08:01 1234   /usr/lib/x.so
Size:            4194304 kB
Rss:                   0 kB
";
        assert_eq!(parse_wasm_memory_rss(smaps), (32 + 100) * 1024);
        assert_eq!(parse_wasm_memory_rss(""), 0);
    }

    #[test]
    fn cpu_model_is_the_first_model_name() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 7B13\nprocessor\t: 1\nmodel name\t: AMD EPYC 7B13\n";
        assert_eq!(parse_cpu_model(info).as_deref(), Some("AMD EPYC 7B13"));
        assert_eq!(parse_cpu_model("processor: 0\n"), None);
    }

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(process_rss(me).unwrap() > 0);
        assert!(process_cpu(me).is_some());
        let threads = threads(me);
        assert!(threads.iter().any(|t| t.tid == me), "{threads:?}");
        assert!(clock_ticks_per_second() >= 100);
        assert!(mem_total().unwrap() > 0);
    }
}
