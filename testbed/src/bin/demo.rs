//! `demo`: streamtap's streaming health, one call at a time.
//!
//! Starts the mock LLM upstream (12 tokens, 150 ms apart), the collector and
//! Envoy with streamtap, then streams the same chat completion along a few
//! paths:
//!
//! ```text
//! 1 smooth:             client → Envoy + streamtap → mock LLM
//! 2 buffered upstream:  client → Envoy + streamtap → Envoy (buffering Lua) → mock LLM
//! 3 nginx gzip:         client → nginx (gzip on) → Envoy + streamtap → mock LLM
//! 4 the fix:            client → nginx (gzip on) → Envoy + streamtap
//!                       ({"disable_downstream_buffering":true}) → mock LLM
//! ```
//!
//! (3 and 4 only when nginx is installed: `make nginx`.) Each call is
//! streamed once by the demo, printing the time of every read as it arrives,
//! then once by `streamtap-probe` (built beside this binary by `make demo`),
//! whose `--json` verdicts at Envoy and at the client and diagnosis are
//! shown. The probe depends on this crate, so it runs as a subprocess. Any
//! verdict other than the path's expected one fails the demo: it doubles as
//! a smoke test.
//!
//! Every streamtap records the timeline (`capture.timeline`), so the
//! collector's pages (`http://<collector>/`, printed first) draw each call.
//! With `KEEP=1` in the environment (`make demo KEEP=1`) the demo leaves the
//! collector and its pages up after the recap, until Ctrl-C.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::client::{self, check_live};
use testbed::collector::Collector;
use testbed::envoy::{default_wasm_path, Envoy, EnvoyOptions, FilterVariant};
use testbed::nginx::{nginx_bin, Nginx, NginxOptions};
use testbed::upstream::MockUpstream;

const TOKENS: &str = "12";
const INTERVAL_MS: &str = "150";
const PATH: &str = "/v1/chat/completions";
const PROMPT: &str = "Say hello, slowly";
const CHAT_REQUEST: &str = r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello, slowly"}]}"#;
/// What the OpenAI SDKs offer (and the probe sends): nginx gzips only when asked.
const ACCEPT_ENCODING: &str = "gzip, deflate";
/// streamtap's config in the demo: export every 100 ms, record the timeline.
const DEMO_CONFIG: &str = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100},"capture":{"timeline":true}}"#;
const FIX_CONFIG: &str = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100},"capture":{"timeline":true},"disable_downstream_buffering":true}"#;
/// Generous: a token that waits this long somewhere would be plainly visible.
const LIVE_BOUND: Duration = Duration::from_millis(50);
const WAIT: Duration = Duration::from_secs(10);
const PROBE_TIMEOUT_S: &str = "30";

/// One path through the test bed and what the probe must say about it.
struct Scenario {
    title: &'static str,
    chain: &'static str,
    /// In the recap.
    label: &'static str,
    envoy: &'static str,
    client: &'static str,
    /// A phrase the diagnosis must contain.
    diagnosis: &'static str,
    /// After the verdicts in the recap.
    hint: &'static str,
}

const SMOOTH: Scenario = Scenario {
    title: "smooth",
    chain: "client → Envoy + streamtap → mock LLM",
    label: "smooth call",
    envoy: "smooth",
    client: "smooth",
    diagnosis: "smooth at Envoy and at the client",
    hint: "",
};
const UPSTREAM: Scenario = Scenario {
    title: "buffered upstream",
    chain: "client → Envoy + streamtap → Envoy (Lua response_handle:body()) → mock LLM",
    label: "buffered upstream",
    envoy: "buffered",
    client: "buffered",
    diagnosis: "already buffered when it reached Envoy: look upstream",
    hint: " → look upstream",
};
const NGINX: Scenario = Scenario {
    title: "buffered after Envoy",
    chain: "client → nginx (gzip on for text/event-stream) → Envoy + streamtap → mock LLM",
    label: "nginx gzip in front",
    envoy: "smooth",
    client: "buffered",
    diagnosis: "something between Envoy and you buffers",
    hint: " → look between Envoy and the client",
};
const FIX: Scenario = Scenario {
    title: "the fix",
    chain: "client → nginx (gzip on) → Envoy + streamtap {\"disable_downstream_buffering\":true} → mock LLM",
    label: "nginx + disable_downstream_buffering",
    envoy: "smooth",
    client: "smooth",
    diagnosis: "smooth at Envoy and at the client",
    hint: " (x-accel-buffering: no)",
};

/// What the probe said about one call.
struct Verdicts {
    envoy: String,
    client: String,
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("\ndemo failed: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), String> {
    let wasm = default_wasm_path();
    if !wasm.is_file() {
        return Err(format!("{} missing: run `make build`", wasm.display()));
    }
    let probe = probe_path()?;
    let upstream =
        MockUpstream::start().map_err(|e| format!("cannot start the mock upstream: {e}"))?;
    let collector = Collector::start().map_err(|e| format!("cannot start the collector: {e}"))?;
    let keep = std::env::var("KEEP").is_ok_and(|v| v == "1");
    let tapped_opts =
        |to: SocketAddr| EnvoyOptions::new(to, collector.addr).with_plugin_config(DEMO_CONFIG);
    let mut envoy = Envoy::start(&tapped_opts(upstream.addr))?;
    println!(
        "mock LLM upstream  {} ({TOKENS} tokens, {INTERVAL_MS} ms apart)",
        upstream.addr
    );
    println!("collector          {}", collector.addr);
    println!(
        "viewer             http://{}/ (the calls and their timelines{})",
        collector.addr,
        if keep {
            "; up until Ctrl-C"
        } else {
            "; make demo KEEP=1 keeps it up"
        }
    );
    println!(
        "Envoy + streamtap  {} (admin {})",
        envoy.listener, envoy.admin
    );
    // (label, what was found)
    let mut recap: Vec<(&str, String)> = Vec::new();

    // 1. Smooth: the demo's own call, checked live and byte for byte.
    header(1, &SMOOTH);
    let got = stream(envoy.listener, "demo-1")?;
    let sent = upstream
        .wait_sent("demo-1", WAIT)
        .ok_or("the mock upstream has no record of the request")?;
    let live = check_live(&sent, &got, LIVE_BOUND)?;
    println!(
        "  live        {} bytes, byte-for-byte what the upstream sent; each token at most {:.2} ms after it left the upstream",
        got.body.len(),
        live.max_delay.as_secs_f64() * 1000.0
    );
    let summaries = collector.wait_for_calls(1, WAIT);
    let summary = summaries.first().ok_or_else(|| {
        format!(
            "the collector received no summary within {WAIT:?}; Envoy log:\n{}",
            envoy.log()
        )
    })?;
    println!("  streamtap   {}", summary_line(summary));
    println!("              {}", health_line(&summary["stream_health"]));
    let request_id = summary["id"].as_str().unwrap_or_default();
    if !envoy.wait_for_access_log(&format!("id={request_id}"), WAIT) {
        return Err(format!(
            "no access-log line for request {request_id} within {WAIT:?}"
        ));
    }
    let access_log = envoy.access_log();
    let line = access_log
        .lines()
        .find(|line| line.contains(&format!("id={request_id}")))
        .unwrap_or_default();
    // The line ends with the whole summary, shown above in short.
    let line = line
        .split_once(" summary={")
        .map_or(line.to_string(), |(head, _)| {
            format!("{head} summary={{…}}")
        });
    println!("  access log  {line}");
    println!("  then streamtap-probe, on a call of its own:");
    recap.push(judged(&SMOOTH, &probe, envoy.listener, collector.addr)?);

    // 2. Buffered upstream: a second Envoy holds the response until it ends.
    header(2, &UPSTREAM);
    {
        let lua_opts = EnvoyOptions::new(upstream.addr, unused_address()?)
            .with_filter(FilterVariant::BufferingLua);
        let lua = Envoy::start(&lua_opts).map_err(|e| format!("buffering Envoy: {e}"))?;
        let tapped = Envoy::start(&tapped_opts(lua.listener))?;
        stream(tapped.listener, "demo-2")?;
        recap.push(judged(&UPSTREAM, &probe, tapped.listener, collector.addr)?);
    }

    // 3 and 4: nginx in front, then the fix.
    let gzip = NginxOptions::default().with_gzip_sse(true);
    if !nginx_bin().is_file() {
        for (n, scenario) in [(3, &NGINX), (4, &FIX)] {
            header(n, scenario);
            println!("  skipped: nginx not installed (make nginx)");
            recap.push((scenario.label, "skipped: nginx not installed".to_string()));
        }
    } else {
        header(3, &NGINX);
        match Nginx::start(envoy.listener, &gzip) {
            Err(e) => skipped(&mut recap, &NGINX, &e),
            Ok(nginx) => {
                stream(nginx.addr, "demo-3")?;
                recap.push(judged(&NGINX, &probe, nginx.addr, collector.addr)?);
            }
        }
        header(4, &FIX);
        let fixed = Envoy::start(
            &EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(FIX_CONFIG),
        )?;
        match Nginx::start(fixed.listener, &gzip) {
            Err(e) => skipped(&mut recap, &FIX, &e),
            Ok(nginx) => {
                stream(nginx.addr, "demo-4")?;
                recap.push(judged(&FIX, &probe, nginx.addr, collector.addr)?);
            }
        }
    }

    envoy.stop();
    drop(upstream);
    println!("\nrecap");
    let width = recap
        .iter()
        .map(|(label, _)| label.len())
        .max()
        .unwrap_or(0)
        + 1;
    for (label, found) in &recap {
        println!("  {:<width$}  {found}", format!("{label}:"));
    }
    if keep {
        // Every Envoy has stopped; the collector serves the pages until Ctrl-C.
        println!("\nviewer: http://{}/ is up; Ctrl-C to stop", collector.addr);
        loop {
            std::thread::park();
        }
    }
    Ok(())
}

fn skipped(recap: &mut Vec<(&str, String)>, scenario: &Scenario, error: &str) {
    println!("  skipped: nginx did not start: {}", first_line(error));
    recap.push((scenario.label, "skipped: nginx did not start".to_string()));
}

fn header(n: usize, scenario: &Scenario) {
    println!("\n== {n}. {}: {}", scenario.title, scenario.chain);
}

/// Streams the chat completion through `addr`, printing on one line, as
/// they come, when each read arrived (ms after the request; `×N` when it
/// brought N tokens at once).
fn stream(addr: SocketAddr, test_id: &str) -> Result<client::StreamResult, String> {
    let headers = [
        ("x-test-id", test_id),
        ("x-mock-tokens", TOKENS),
        ("x-mock-interval-ms", INTERVAL_MS),
        ("accept-encoding", ACCEPT_ENCODING),
    ];
    let mut lines = SseDataLines::default();
    let started = Instant::now();
    print!("  reads (ms) ");
    let got = client::post_with(
        addr,
        PATH,
        &headers,
        CHAT_REQUEST.as_bytes(),
        &mut |at, bytes| {
            let tokens = lines.feed(bytes).iter().filter(|d| has_content(d)).count();
            let ms = at.duration_since(started).as_millis();
            if tokens > 1 {
                print!(" {ms}×{tokens}");
            } else {
                print!(" {ms}");
            }
            let _ = std::io::stdout().flush();
        },
    );
    println!();
    let got = got.map_err(|e| format!("request through {addr} failed: {e}"))?;
    if got.status != 200 {
        return Err(format!(
            "{addr} answered {}: {}",
            got.status,
            String::from_utf8_lossy(&got.body)
        ));
    }
    if let Some(encoding) = got.header("content-encoding") {
        println!(
            "              ({}, {encoding}-encoded)",
            reads(got.frames.len())
        );
    }
    Ok(got)
}

/// Runs `streamtap-probe --json` through `entry`, prints its verdicts and
/// diagnosis, and checks them against the scenario.
fn judged(
    scenario: &'static Scenario,
    probe: &Path,
    entry: SocketAddr,
    collector: SocketAddr,
) -> Result<(&'static str, String), String> {
    let output = Command::new(probe)
        .arg(format!("http://{entry}{PATH}"))
        .args(["--collector", &format!("http://{collector}")])
        .args(["--header", &format!("x-mock-tokens: {TOKENS}")])
        .args(["--header", &format!("x-mock-interval-ms: {INTERVAL_MS}")])
        .args(["--prompt", PROMPT, "--timeout-s", PROBE_TIMEOUT_S, "--json"])
        .output()
        .map_err(|e| format!("cannot run {}: {e}", probe.display()))?;
    if !output.status.success() {
        return Err(format!(
            "streamtap-probe failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        ));
    }
    let report: Value = serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "streamtap-probe --json printed no JSON ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })?;
    let client_health = &report["client"]["stream_health"];
    let envoy_health = &report["envoy"]["stream_health"];
    let diagnosis = report["diagnosis"].as_str().unwrap_or_default();
    println!("  at Envoy    {}", health_line(envoy_health));
    println!(
        "  at client   {} ({})",
        health_line(client_health),
        reads(report["client"]["reads"].as_u64().unwrap_or(0) as usize)
    );
    println!("  diagnosis   {diagnosis}");

    let verdicts = Verdicts {
        envoy: verdict(envoy_health),
        client: verdict(client_health),
    };
    let mut wrong = Vec::new();
    if verdicts.envoy != scenario.envoy {
        wrong.push(format!(
            "{} at Envoy (expected {}; collector lookup: {})",
            verdicts.envoy, scenario.envoy, report["envoy_lookup"]
        ));
    }
    if verdicts.client != scenario.client {
        wrong.push(format!(
            "{} at the client (expected {})",
            verdicts.client, scenario.client
        ));
    }
    if !diagnosis.contains(scenario.diagnosis) {
        wrong.push(format!(
            "the diagnosis does not say {:?}",
            scenario.diagnosis
        ));
    }
    if !wrong.is_empty() {
        return Err(format!("{}: {}", scenario.label, wrong.join("; ")));
    }
    Ok((
        scenario.label,
        format!(
            "{} at Envoy, {} at the client{}",
            verdicts.envoy, verdicts.client, scenario.hint
        ),
    ))
}

/// `streamtap-probe` beside this binary (same target dir and profile).
fn probe_path() -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this binary: {e}"))?;
    let probe = exe.with_file_name(format!("streamtap-probe{}", std::env::consts::EXE_SUFFIX));
    if probe.is_file() {
        Ok(probe)
    } else {
        Err(format!(
            "{} missing: run `cargo build --release -p streamtap-probe` (`make demo` does)",
            probe.display()
        ))
    }
}

/// An address nothing listens on: the buffering Envoy's collector cluster
/// (it has no streamtap to export anything).
fn unused_address() -> Result<SocketAddr, String> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    listener.local_addr().map_err(|e| e.to_string())
}

fn reads(n: usize) -> String {
    format!("{n} read{}", if n == 1 { "" } else { "s" })
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or_default()
}

fn verdict(health: &Value) -> String {
    health["verdict"]
        .as_str()
        .unwrap_or("no stream_health")
        .to_string()
}

fn ms(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "-".to_string(), |ms| format!("{ms:.0} ms"))
}

/// `smooth: 12 deltas, largest burst 1 (0%), longest stall 152 ms (content)`
fn health_line(health: &Value) -> String {
    if health.is_null() {
        return "no stream_health".to_string();
    }
    let phase = health["stall_phase"]
        .as_str()
        .map_or_else(String::new, |phase| format!(" ({phase})"));
    format!(
        "{}: {} deltas, largest burst {} (burst share {:.0}%), longest stall {}{phase}",
        verdict(health),
        health["content_deltas"],
        health["largest_burst"],
        health["burst_share"].as_f64().unwrap_or(0.0) * 100.0,
        ms(&health["longest_stall_ms"]),
    )
}

/// `gpt-4o-mini, completed, 12 output tokens (reported), ttft 151 ms, 1806 ms in all`
fn summary_line(summary: &Value) -> String {
    format!(
        "{}, {}, {} output tokens ({}), ttft {}, {} in all",
        summary["model"].as_str().unwrap_or("-"),
        summary["outcome"].as_str().unwrap_or("-"),
        summary["output_tokens"],
        summary["usage_source"].as_str().unwrap_or("-"),
        ms(&summary["ttft_ms"]),
        ms(&summary["duration_ms"]),
    )
}

/// Splits a byte stream into the payloads of its `data:` lines, whatever
/// the chunk boundaries and line ends.
#[derive(Default)]
struct SseDataLines {
    pending: Vec<u8>,
}

impl SseDataLines {
    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut payloads = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n' || b == b'\r') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let text = String::from_utf8_lossy(&line);
            if let Some(data) = text.trim_end().strip_prefix("data:") {
                payloads.push(data.trim_start().to_string());
            }
        }
        payloads
    }
}

/// Whether an event's payload carries a content token.
fn has_content(data: &str) -> bool {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|chunk| {
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .map(|c| !c.is_empty())
        })
        .unwrap_or(false)
}
