//! What one run measures and how hard: the fixed method, the targets, and the settings the environment may change for quick tries.

use crate::*;

/// SSE events per call: role delta, 46 tokens, finish delta, usage, `[DONE]`.
pub(crate) const EVENTS_PER_CALL: usize = 50;

pub(crate) const ROUNDS: usize = 3;

/// Moderate load: 20 streams, an event every 10 ms each (2 000 events/s).
pub(crate) const MODERATE_CONNECTIONS: usize = 20;

pub(crate) const MODERATE_INTERVAL_MS: u64 = 10;

pub(crate) const MODERATE_CALLS_PER_CONNECTION: usize = 5;

/// Repetitions of the side-by-side latency comparison.
pub(crate) const PAIRED_REPETITIONS: usize = 3;

/// Saturation: events as fast as the mock can write them, on enough
/// connections to keep one Envoy worker busy, for a fixed time.
pub(crate) const SATURATION_CONNECTIONS: usize = 64;

pub(crate) const SATURATION_SECONDS: f64 = 4.0;

/// The mock's writes at saturation (`x-mock-chunking`).
pub(crate) const SATURATION_CHUNKING: &str = "event";

/// Paced high load: many streams, each an event every 5 ms, so that (nearly)
/// every event reaches Envoy as its own body chunk, as real token streams do,
/// while Envoy's worker is close to saturation: 400 streams; the mock's timers
/// pace them at ~55 000 events/s in all, ~90% of the worker at ~16 µs per
/// one-event chunk. (At half that load the CPU per event is noisier: fewer
/// events per wake-up, and more variation in how many.)
pub(crate) const PACED_CONNECTIONS: usize = 400;

pub(crate) const PACED_INTERVAL_MS: u64 = 5;

pub(crate) const PACED_CALLS_PER_CONNECTION: usize = 8;

/// Before each measurement on a fresh Envoy: connections, pools, V8's tiers.
pub(crate) const WARMUP: Duration = Duration::from_millis(500);

/// Time for the filters' exports (100 ms / 200 ms ticks) to reach the collector.
pub(crate) const EXPORT_SETTLE: Duration = Duration::from_millis(500);

/// Memory per open stream: this many streams held open and idle.
pub(crate) const IDLE_STREAMS: usize = 500;

/// The idle streams' events come this far apart until they idle
/// (`x-mock-idle-after`); they are opened 50 at a time.
pub(crate) const IDLE_INTERVAL_MS: u64 = 1;

/// Events before an idle stream idles; the long one has 10×.
pub(crate) const IDLE_SHORT_EVENTS: usize = 50;

pub(crate) const IDLE_LONG_EVENTS: usize = 500;

/// Content cap of the "capped" streamtap memory runs: below the content of
/// both the short and the long response.
pub(crate) const IDLE_CAPPED_CONTENT_BYTES: usize = 128;

/// The slow call of the timeline panel.
pub(crate) const TIMELINE_TOKENS: usize = 30;

pub(crate) const TIMELINE_INTERVAL_MS: u64 = 50;

pub(crate) const FONT_PATH: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

// Targets (DESIGN.md / issue 3).
pub(crate) const TARGET_VS_EMPTY: f64 = 0.95;

pub(crate) const TARGET_VS_SSE: f64 = 1.5;

pub(crate) const TARGET_ADDED_P99_US: f64 = 50.0;

pub(crate) const TARGET_WASM_BYTES: u64 = 250_000;

/// Memory per open stream counts as independent of the response length when
/// 10× the events add at most this much per stream (content capped).
pub(crate) const TARGET_MEM_GROWTH_BYTES: f64 = 1024.0;

/// A run during which other processes used more than this share of a core
/// (in any measured phase) is disturbed, and run again.
pub(crate) const DISTURBED_OTHER_CORES: f64 = 0.20;

pub(crate) const MAX_RETRIES: usize = 2;

/// No more re-runs after this much of the bench's time (`make bench` must end
/// within 10 minutes, the build included).
pub(crate) const RETRY_UNTIL: Duration = Duration::from_secs(330);

/// Envoy's worker below this busy share at saturation: the load generator,
/// not Envoy, was the limit.
pub(crate) const SATURATED_WORKER_BUSY: f64 = 0.90;

/// Tunables, from the constants above unless the environment overrides them.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) rounds: usize,
    pub(crate) saturation: Duration,
    pub(crate) saturation_connections: usize,
    pub(crate) saturation_chunking: String,
    pub(crate) out_dir: PathBuf,
    pub(crate) variants: Vec<Variant>,
    pub(crate) memory: bool,
    pub(crate) streamtap_config: String,
}

impl Settings {
    pub(crate) fn from_env() -> Result<Settings, String> {
        fn var<T: std::str::FromStr>(name: &str, default: T) -> Result<T, String> {
            match std::env::var(name) {
                Ok(v) if !v.is_empty() => v
                    .parse()
                    .map_err(|_| format!("{name}={v:?} is not a valid value")),
                _ => Ok(default),
            }
        }
        let seconds: f64 = var("BENCH_SATURATION_SECONDS", SATURATION_SECONDS)?;
        if !(0.5..=60.0).contains(&seconds) {
            return Err("BENCH_SATURATION_SECONDS must be within 0.5..=60".to_string());
        }
        Ok(Settings {
            rounds: var("BENCH_ROUNDS", ROUNDS)?.clamp(1, 20),
            saturation: Duration::from_secs_f64(seconds),
            saturation_connections: var("BENCH_SATURATION_CONNECTIONS", SATURATION_CONNECTIONS)?
                .clamp(1, 2000),
            saturation_chunking: var("BENCH_SATURATION_CHUNKING", SATURATION_CHUNKING.to_string())?,
            out_dir: match std::env::var_os("BENCH_OUT_DIR") {
                Some(d) if !d.is_empty() => PathBuf::from(d),
                _ => workspace_root().join("bench").join("results"),
            },
            variants: match std::env::var("BENCH_VARIANTS") {
                Ok(list) if !list.is_empty() => list
                    .split(',')
                    .map(|k| {
                        VARIANTS
                            .iter()
                            .copied()
                            .find(|v| v.key() == k.trim())
                            .ok_or_else(|| format!("BENCH_VARIANTS: unknown variant {k:?}"))
                    })
                    .collect::<Result<Vec<_>, _>>()?,
                _ => VARIANTS.to_vec(),
            },
            memory: var("BENCH_MEMORY", 1u8)? != 0,
            streamtap_config: var("BENCH_STREAMTAP_CONFIG", DEFAULT_PLUGIN_CONFIG.to_string())?,
        })
    }
}
