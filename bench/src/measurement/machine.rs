//! The machine the bench runs on, and what it needs before it starts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::Duration;

use serde::Serialize;
use testbed::envoy::{default_wasm_path, empty_filter_wasm_path, envoy_bin};
use testbed::procfs;

use crate::settings::FONT_PATH;

/// `machine` in `latest.json`.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub mem_total_bytes: u64,
    pub envoy_version: String,
    pub date_utc: String,
    pub clk_tck: u64,
    /// Is anything else running? One second of the whole machine's CPU.
    pub busy_cores_before_start: f64,
}

impl Machine {
    pub fn read() -> Machine {
        let envoy_version = command_line(&envoy_bin(), &["--version"])
            .map(|l| l.split("version:").nth(1).unwrap_or(&l).trim().to_string())
            .unwrap_or_else(|| "unknown".to_string());
        let date_utc = command_line(Path::new("date"), &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
            .unwrap_or_else(|| "unknown".to_string());
        let tck = procfs::clock_ticks_per_second() as f64;
        let s0 = procfs::system_cpu().unwrap_or_default();
        thread::sleep(Duration::from_secs(1));
        let busy = procfs::system_cpu().unwrap_or_default().since(&s0).busy() as f64 / tck;
        Machine {
            nproc: thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            cpu_model: procfs::cpu_model(),
            kernel: procfs::kernel_release(),
            mem_total_bytes: procfs::mem_total().unwrap_or(0),
            envoy_version,
            date_utc,
            clk_tck: procfs::clock_ticks_per_second(),
            busy_cores_before_start: busy,
        }
    }

    /// `1.40.0` of Envoy's `<sha>/1.40.0/Clean/RELEASE/BoringSSL`.
    pub fn envoy_release(&self) -> &str {
        self.envoy_version.split('/').nth(1).unwrap_or("?")
    }
}

/// Envoy, both filters and the chart's font are there.
pub fn preflight() -> Result<(), String> {
    let checks = [
        (envoy_bin(), "run `make venv` (or set ENVOY_BIN)"),
        (default_wasm_path(), "run `make build`"),
        (empty_filter_wasm_path(), "run `make bench-filters`"),
        (
            PathBuf::from(FONT_PATH),
            "install fonts-dejavu-core (`make bench` does)",
        ),
    ];
    for (path, fix) in checks {
        if !path.is_file() {
            return Err(format!("{} missing: {fix}", path.display()));
        }
    }
    Ok(())
}

pub fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn command_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}
