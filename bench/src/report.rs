//! What the run prints and records: the machine, a line per round, and the final table.

use crate::*;

pub(crate) fn preflight() -> Result<(), String> {
    let envoy = envoy_bin();
    let checks = [
        (envoy.clone(), "run `make venv` (or set ENVOY_BIN)"),
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

pub(crate) fn file_size(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

pub(crate) fn command_line(program: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(str::to_string)
}

pub(crate) fn machine_info() -> Value {
    let envoy_version = command_line(&envoy_bin(), &["--version"])
        .map(|l| l.split("version:").nth(1).unwrap_or(&l).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let date = command_line(Path::new("date"), &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
        .unwrap_or_else(|| "unknown".to_string());
    // Is anything else running? One second of the whole machine's CPU.
    let tck = procfs::clock_ticks_per_second() as f64;
    let s0 = procfs::system_cpu().unwrap_or_default();
    thread::sleep(Duration::from_secs(1));
    let busy_before = procfs::system_cpu().unwrap_or_default().since(&s0).busy() as f64 / tck;
    json!({
        "nproc": thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "cpu_model": procfs::cpu_model(),
        "kernel": procfs::kernel_release(),
        "mem_total_bytes": procfs::mem_total().unwrap_or(0),
        "envoy_version": envoy_version,
        "date_utc": date,
        "clk_tck": procfs::clock_ticks_per_second(),
        "busy_cores_before_start": busy_before,
    })
}

pub(crate) fn print_round_line(variant: Variant, round: usize, f: &Figures, took: Duration) {
    let g = |k: &str| f.get(k).copied();
    let show = |v: Option<f64>, scale: f64, digits: usize| {
        v.map_or("-".to_string(), |x| format!("{:.*}", digits, x * scale))
    };
    println!(
        "  r{round} {:<24} sat {:>7} ev/s {:>5} µs/ev worker {:>3}% bench {:>3}% other {:>3}% ev/chunk {:>4} ev/read {:>4} | \
         paced {:>5} µs/ev worker {:>3}% other {:>3}% ev/chunk {:>4} | delay p50/p99 {:>6}/{:>6} µs ttft {:>6} ms ({:.1} s)",
        variant.label(),
        show(g("sat_events_per_s"), 1.0, 0),
        show(g("sat_envoy_cpu_us_per_event"), 1.0, 2),
        show(g("sat_envoy_worker_busy"), 100.0, 0),
        show(g("sat_bench_cores"), 100.0, 0),
        show(g("sat_other_cores"), 100.0, 0),
        show(g("sat_envoy_events_per_chunk"), 1.0, 1),
        show(g("sat_client_events_per_read"), 1.0, 1),
        show(g("paced_envoy_cpu_us_per_event"), 1.0, 2),
        show(g("paced_envoy_worker_busy"), 100.0, 0),
        show(g("paced_other_cores"), 100.0, 0),
        show(g("paced_envoy_events_per_chunk"), 1.0, 2),
        show(g("delay_p50_us"), 1.0, 0),
        show(g("delay_p99_us"), 1.0, 0),
        show(g("ttft_p50_us"), 0.001, 2),
        took.as_secs_f64(),
    );
}

pub(crate) fn fmt_spread(s: Option<&Value>, scale: f64, digits: usize) -> String {
    match s {
        Some(v) if !v.is_null() => {
            let g = |k: &str| v[k].as_f64().unwrap_or(f64::NAN) * scale;
            format!(
                "{:.*} ({:.*}–{:.*})",
                digits,
                g("median"),
                digits,
                g("min"),
                digits,
                g("max")
            )
        }
        _ => "–".to_string(),
    }
}

pub(crate) fn fmt_med(s: Option<&Value>, scale: f64, digits: usize) -> String {
    match s.and_then(|v| v["median"].as_f64()) {
        Some(x) => format!("{:.*}", digits, x * scale),
        None => "–".to_string(),
    }
}

pub(crate) fn print_report(
    summaries: &BTreeMap<Variant, BTreeMap<String, Value>>,
    ratios: &Map<String, Value>,
    side_by_side: &Value,
    memory: &Value,
    targets: &[Value],
    notes: &[String],
    wasm_bytes: u64,
) {
    let plain_eps = summaries
        .get(&Variant::Plain)
        .and_then(|s| s.get("sat_events_per_s"))
        .and_then(|v| v["median"].as_f64());
    println!("results (median of the rounds, min–max in parentheses), as Markdown:\n");
    println!(
        "| variant | events/s at saturation | × plain | Envoy CPU µs/event, saturation | Envoy CPU µs/event, paced (1 event/chunk) | TTFT p50 / p99 ms | delay p50 / p99 µs | Envoy RSS MiB |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for v in VARIANTS {
        let Some(s) = summaries.get(&v) else { continue };
        let eps = s.get("sat_events_per_s");
        let vs_plain = eps
            .and_then(|x| x["median"].as_f64())
            .zip(plain_eps)
            .map_or("–".to_string(), |(a, b)| format!("{:.2}", a / b));
        println!(
            "| {} | {} | {} | {} | {} | {} / {} | {} / {} | {} |",
            v.label(),
            fmt_spread(eps, 1.0, 0),
            vs_plain,
            fmt_spread(s.get("sat_envoy_cpu_us_per_event"), 1.0, 2),
            fmt_spread(s.get("paced_envoy_cpu_us_per_event"), 1.0, 2),
            fmt_med(s.get("ttft_p50_us"), 0.001, 2),
            fmt_med(s.get("ttft_p99_us"), 0.001, 2),
            fmt_med(s.get("delay_p50_us"), 1.0, 0),
            fmt_med(s.get("delay_p99_us"), 1.0, 0),
            fmt_med(s.get("envoy_rss_mb"), 1.0, 1),
        );
    }
    println!("\nsaturation load, per variant (medians): Envoy worker busy, bench process, other, SSE events per Envoy body chunk:");
    for v in VARIANTS {
        let Some(s) = summaries.get(&v) else { continue };
        println!(
            "  {:<24} worker {:>4}  bench {:>4} (loadgen {:>4}, mock {:>4})  other {:>4}  events/chunk {:>5}  paced: worker {:>4}",
            v.label(),
            fmt_med(s.get("sat_envoy_worker_busy"), 100.0, 0) + "%",
            fmt_med(s.get("sat_bench_cores"), 100.0, 0) + "%",
            fmt_med(s.get("sat_bench_loadgen_cores"), 100.0, 0) + "%",
            fmt_med(s.get("sat_bench_mock_cores"), 100.0, 0) + "%",
            fmt_med(s.get("sat_other_cores"), 100.0, 0) + "%",
            fmt_med(s.get("sat_envoy_events_per_chunk"), 1.0, 1),
            fmt_med(s.get("paced_envoy_worker_busy"), 100.0, 0) + "%",
        );
    }
    println!("\nstreamtap, headline ratios (per-round pairs: median, min–max):");
    for (key, label) in [
        ("vs_plain_envoy", "plain Envoy"),
        ("vs_empty_wasm", "near-empty wasm floor"),
        ("vs_sse_to_metadata", "native sse_to_metadata"),
    ] {
        let r = &ratios[key];
        println!(
            "  vs {label:<23} events/s × {}  CPU/event × {} (saturation), × {} (paced)",
            fmt_spread(Some(&r["events_per_s"]), 1.0, 2),
            fmt_spread(Some(&r["sat_cpu_per_event"]), 1.0, 2),
            fmt_spread(Some(&r["paced_cpu_per_event"]), 1.0, 2),
        );
    }
    let added = &ratios["added_delay_over_plain_envoy_us"];
    println!(
        "  added per-event delay over plain Envoy at moderate load: side by side, pooled p50 {:+.0} µs, p99 {:+.0} µs \
         (per repetition p50 {} µs, p99 {} µs); across the sequential runs p50 {} µs, p99 {} µs",
        side_by_side["pooled_added_p50_us"].as_f64().unwrap_or(f64::NAN),
        side_by_side["pooled_added_p99_us"].as_f64().unwrap_or(f64::NAN),
        fmt_spread(Some(&side_by_side["added_p50_us"]), 1.0, 0),
        fmt_spread(Some(&side_by_side["added_p99_us"]), 1.0, 0),
        fmt_spread(Some(&added["p50"]), 1.0, 0),
        fmt_spread(Some(&added["p99"]), 1.0, 0),
    );
    println!(
        "  CPU per event above the near-empty wasm floor: {} µs paced, {} µs at saturation",
        fmt_spread(
            Some(&ratios["streamtap_cpu_us_per_event_above_empty_wasm_paced"]),
            1.0,
            2
        ),
        fmt_spread(
            Some(&ratios["streamtap_cpu_us_per_event_above_empty_wasm_sat"]),
            1.0,
            2
        ),
    );
    let b = |k: &str| memory[k].as_f64().unwrap_or(f64::NAN);
    println!(
        "  memory per open stream: streamtap {:.0} bytes, {:+.0} over plain Envoy's {:.0}; .wasm {wasm_bytes} bytes",
        memory["streamtap"]["short_per_stream_bytes"]
            .as_f64()
            .unwrap_or(f64::NAN),
        b("streamtap_extra_over_plain_per_stream_bytes"),
        memory["plain_envoy"]["short_per_stream_bytes"]
            .as_f64()
            .unwrap_or(f64::NAN),
    );
    println!("\ntargets:");
    for t in targets {
        let verdict = match t["pass"].as_bool() {
            Some(true) => "PASS",
            Some(false) => "FAIL",
            None => "n/a ",
        };
        let basis = t["basis"]
            .as_str()
            .map_or(String::new(), |b| format!(" [{b}]"));
        println!(
            "  [{verdict}] {} — measured {}{basis}",
            t["target"].as_str().unwrap_or("?"),
            t["measured"]
                .as_f64()
                .map_or("–".to_string(), |x| format!("{x:.3}"))
        );
    }
    if !notes.is_empty() {
        println!("\nnotes:");
        for n in notes {
            println!("  - {n}");
        }
    }
}

// ---------------------------------------------------------------- chart
