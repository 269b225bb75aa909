//! What the bench runs: the workload's constants, the targets, and the
//! environment's overrides for quick tries (`make bench` sets none).

use std::path::PathBuf;
use std::time::Duration;

use crate::variants::{Variant, COST_VARIANTS, ROUND_VARIANTS};
use testbed::envoy::{workspace_root, DEFAULT_PLUGIN_CONFIG};

/// SSE events per call: role delta, 46 tokens, finish delta, usage, `[DONE]`.
pub const EVENTS_PER_CALL: usize = 50;
const ROUNDS: usize = 3;
/// Moderate load: 20 streams, an event every 10 ms each (2 000 events/s).
pub const MODERATE_CONNECTIONS: usize = 20;
pub const MODERATE_INTERVAL_MS: u64 = 10;
pub const MODERATE_CALLS_PER_CONNECTION: usize = 5;
/// Repetitions of the side-by-side latency comparison: enough for a median
/// of the per-repetition p99 differences that holds still.
const PAIRED_REPETITIONS: usize = 7;
/// Saturation: events as fast as the mock can write them, on enough
/// connections to keep one Envoy worker busy, for a fixed time.
const SATURATION_CONNECTIONS: usize = 64;
const SATURATION_SECONDS: f64 = 4.0;
/// The mock's writes at saturation (`x-mock-chunking`).
const SATURATION_CHUNKING: &str = "event";
/// Paced high load: many streams, each an event every 5 ms, so that (nearly)
/// every event reaches Envoy as its own body chunk, as real token streams do,
/// while Envoy's worker is close to saturation: 400 streams; the mock's timers
/// pace them at ~55 000 events/s in all, ~90% of the worker at ~16 µs per
/// one-event chunk. (At half that load the CPU per event is noisier: fewer
/// events per wake-up, and more variation in how many.)
pub const PACED_CONNECTIONS: usize = 400;
pub const PACED_INTERVAL_MS: u64 = 5;
pub const PACED_CALLS_PER_CONNECTION: usize = 8;
/// Before each measurement on a fresh Envoy: connections, pools, V8's tiers.
pub const WARMUP: Duration = Duration::from_millis(500);
/// Time for the filters' exports (100 ms / 200 ms ticks) to reach the collector.
pub const EXPORT_SETTLE: Duration = Duration::from_millis(500);
/// Memory per open stream: this many streams held open and idle.
pub const IDLE_STREAMS: usize = 500;
/// The idle streams' events come this far apart until they idle
/// (`x-mock-idle-after`); they are opened 50 at a time.
pub const IDLE_INTERVAL_MS: u64 = 1;
/// Events before an idle stream idles; the long one has 10×.
pub const IDLE_SHORT_EVENTS: usize = 50;
pub const IDLE_LONG_EVENTS: usize = 500;
/// Content cap of the "capped" streamtap memory runs: below the content of
/// both the short and the long response.
pub const IDLE_CAPPED_CONTENT_BYTES: usize = 128;
/// The capped run also records the timeline, bounded below the short
/// responses' deltas: its memory must not grow with the response either.
pub const IDLE_TIMELINE_ENTRIES: usize = 16;
/// The slow call of the timeline panel.
pub const TIMELINE_TOKENS: usize = 30;
pub const TIMELINE_INTERVAL_MS: u64 = 50;
pub const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

// Targets (DESIGN.md / issue 3).
pub const TARGET_VS_EMPTY: f64 = 0.95;
pub const TARGET_VS_SSE: f64 = 1.5;
pub const TARGET_ADDED_P99_US: f64 = 50.0;
/// Issue 13 (every wire format in): at most 320 000 bytes; issue 15 holds it.
pub const TARGET_WASM_BYTES: u64 = 320_000;
/// Memory per open stream counts as independent of the response length when
/// 10× the events add at most this much per stream (content capped).
pub const TARGET_MEM_GROWTH_BYTES: f64 = 1024.0;
/// A run during which other processes used more than this share of a core
/// (in any measured phase) is disturbed, and run again.
pub const DISTURBED_OTHER_CORES: f64 = 0.20;
pub const MAX_RETRIES: usize = 2;
/// No more re-runs after this much of the bench's time (`make bench` must end
/// within 10 minutes, the build included).
pub const RETRY_UNTIL: Duration = Duration::from_secs(330);
/// Envoy's worker below this busy share at saturation: the load generator,
/// not Envoy, was the limit.
pub const SATURATED_WORKER_BUSY: f64 = 0.90;

/// Tunables, from the constants above unless the environment overrides them.
#[derive(Clone, Debug)]
pub struct Settings {
    pub rounds: usize,
    pub saturation: Duration,
    pub saturation_connections: usize,
    pub saturation_chunking: String,
    pub out_dir: PathBuf,
    pub variants: Vec<Variant>,
    pub memory: bool,
    pub streamtap_config: String,
    /// The cost model's set-ups (`BENCH_COST_VARIANTS`; empty: none).
    pub cost_variants: Vec<Variant>,
    pub paired_repetitions: usize,
    /// `BENCH_QUICK=1` (`make bench-quick`): one round, the floors and
    /// streamtap only, no memory runs, 3 side-by-side repetitions.
    pub quick: bool,
    /// `BENCH_CANDIDATE_WASM`: the `.wasm` of `streamtap_candidate`.
    pub candidate_wasm: Option<PathBuf>,
    /// `BENCH_AB=a,b` (`make bench-ab`): only the A/B of these two set-ups.
    pub ab: Option<(Variant, Variant)>,
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        let seconds: f64 = var("BENCH_SATURATION_SECONDS", SATURATION_SECONDS)?;
        if !(0.5..=60.0).contains(&seconds) {
            return Err("BENCH_SATURATION_SECONDS must be within 0.5..=60".to_string());
        }
        let quick = var("BENCH_QUICK", 0u8)? != 0;
        let settings = Settings {
            quick,
            rounds: var("BENCH_ROUNDS", if quick { 1 } else { ROUNDS })?.clamp(1, 20),
            saturation: Duration::from_secs_f64(seconds),
            saturation_connections: var("BENCH_SATURATION_CONNECTIONS", SATURATION_CONNECTIONS)?
                .clamp(1, 2000),
            saturation_chunking: var("BENCH_SATURATION_CHUNKING", SATURATION_CHUNKING.to_string())?,
            out_dir: match std::env::var_os("BENCH_OUT_DIR") {
                Some(d) if !d.is_empty() => PathBuf::from(d),
                _ => workspace_root().join("bench").join("results"),
            },
            variants: match std::env::var("BENCH_VARIANTS") {
                Ok(list) if !list.is_empty() => parse_variants(&list)?,
                _ if quick => QUICK_VARIANTS.to_vec(),
                _ => ROUND_VARIANTS.to_vec(),
            },
            cost_variants: match std::env::var("BENCH_COST_VARIANTS") {
                Ok(list) if list == "none" => Vec::new(),
                Ok(list) if !list.is_empty() => parse_variants(&list)?,
                _ if quick => QUICK_COST_VARIANTS.to_vec(),
                _ => COST_VARIANTS.to_vec(),
            },
            paired_repetitions: var(
                "BENCH_PAIRED_REPETITIONS",
                if quick { 3 } else { PAIRED_REPETITIONS },
            )?
            .clamp(1, 30),
            memory: var("BENCH_MEMORY", u8::from(!quick))? != 0,
            streamtap_config: var("BENCH_STREAMTAP_CONFIG", DEFAULT_PLUGIN_CONFIG.to_string())?,
            candidate_wasm: std::env::var_os("BENCH_CANDIDATE_WASM")
                .filter(|p| !p.is_empty())
                .map(PathBuf::from),
            ab: match std::env::var("BENCH_AB") {
                Ok(list) if !list.is_empty() => match parse_variants(&list)?[..] {
                    [a, b] => Some((a, b)),
                    _ => return Err(format!("BENCH_AB={list:?}: name two set-ups, a,b")),
                },
                _ => None,
            },
        };
        let pair = settings.ab.iter().flat_map(|&(a, b)| [a, b]);
        let mut chosen = (settings
            .variants
            .iter()
            .chain(&settings.cost_variants)
            .copied())
        .chain(pair);
        if chosen.any(|v| v == Variant::StreamtapCandidate) {
            match &settings.candidate_wasm {
                Some(path) if path.is_file() => {}
                Some(path) => {
                    return Err(format!(
                        "BENCH_CANDIDATE_WASM: no file at {}",
                        path.display()
                    ))
                }
                None => {
                    return Err(
                        "streamtap_candidate needs BENCH_CANDIDATE_WASM (a .wasm path)".to_string(),
                    )
                }
            }
        }
        if settings
            .ab
            .iter()
            .any(|(a, b)| a.filter().is_none() || b.filter().is_none())
        {
            return Err("BENCH_AB: the A/B needs Envoy (not direct)".to_string());
        }
        if settings.cost_variants.iter().any(|v| v.filter().is_none()) {
            return Err("BENCH_COST_VARIANTS: the cost model needs Envoy (not direct)".to_string());
        }
        // The variants' plugin configs, checked before any round runs.
        for v in settings.variants.iter().chain(&settings.cost_variants) {
            v.plugin_config(&settings.streamtap_config)
                .map_err(|e| format!("BENCH_STREAMTAP_CONFIG for {}: {e}", v.key()))?;
        }
        Ok(settings)
    }
}

/// `make bench-quick`'s set-ups: the rounds', and the cost model's.
const QUICK_VARIANTS: [Variant; 4] = [
    Variant::Plain,
    Variant::EmptyWasm,
    Variant::ReadingWasm,
    Variant::Streamtap,
];
const QUICK_COST_VARIANTS: [Variant; 3] =
    [Variant::Plain, Variant::ReadingWasm, Variant::Streamtap];

fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| format!("{name}={v:?} is not a valid value")),
        _ => Ok(default),
    }
}

/// `BENCH_VARIANTS`: comma-separated keys, e.g. `plain_envoy,streamtap`.
fn parse_variants(list: &str) -> Result<Vec<Variant>, String> {
    list.split(',')
        .map(|k| {
            Variant::from_key(k.trim())
                .ok_or_else(|| format!("BENCH_VARIANTS: unknown variant {k:?}"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variants_are_parsed_by_key() {
        assert_eq!(
            parse_variants("plain_envoy, streamtap"),
            Ok(vec![Variant::Plain, Variant::Streamtap])
        );
        assert!(parse_variants("plain_envoy,nginx").is_err());
    }
}
