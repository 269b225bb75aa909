//! Streaming health: how a stream's deltas arrived, judged as they pass, in
//! constant memory.
//!
//! The unit is the body chunk (one read of Envoy's): deltas that arrive in the
//! same chunk arrived together. A *pause* is a silence between chunks that
//! carry deltas longer than `pause_ms` and longer than `pace_factor` times
//! the stream's own pace (a running average of the silences that were not
//! pauses), so a fast model whose deltas TCP coalesces at its own pace is not
//! mistaken for a buffered one. A *burst* is a chunk after a pause carrying
//! at least `burst_deltas` deltas. A *stall* is a silence of at least
//! `stall_ms` after the first delta that is not followed by a burst: a pause
//! followed by a burst is buffering, a pause followed by the normal pace is a
//! stall. Keepalives (SSE comments, Anthropic `ping`) are never progress.
//!
//! The verdict, in this order: `too_short` below `min_deltas` deltas;
//! `buffered` when one chunk carries at least `buffered_share` of them;
//! `stalled` after a stall; `bursty` when bursts carry at least
//! `bursty_share` of them; `smooth` otherwise.

use crate::call::histogram::LogHistogram;
use serde::Serialize;

/// What a stream was doing when it fell silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// Nothing produced yet: the silence is part of the time to first token.
    FirstToken,
    Reasoning,
    Content,
    ToolArguments,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Smooth,
    Bursty,
    Buffered,
    Stalled,
    TooShort,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::FirstToken => "first_token",
            Phase::Reasoning => "reasoning",
            Phase::Content => "content",
            Phase::ToolArguments => "tool_arguments",
        }
    }
}

impl Verdict {
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Smooth => "smooth",
            Verdict::Bursty => "bursty",
            Verdict::Buffered => "buffered",
            Verdict::Stalled => "stalled",
            Verdict::TooShort => "too_short",
        }
    }

    pub const ALL: [Verdict; 5] = [
        Verdict::Smooth,
        Verdict::Bursty,
        Verdict::Buffered,
        Verdict::Stalled,
        Verdict::TooShort,
    ];
}

/// The numbers the verdict is judged by (`stream_health` in the config).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// Judge event streams at all (off: `stream_health` is null, nothing is
    /// watched live; truncation is still told). Default true.
    pub enabled: bool,
    /// Fewer deltas than this are `too_short` to judge. Default 10.
    pub min_deltas: u64,
    /// The shortest silence that counts as a pause. Default 250 ms.
    pub pause_ms: u64,
    /// A pause is also longer than this many times the stream's pace. Default 8.
    pub pace_factor: u64,
    /// A chunk after a pause with at least this many deltas is a burst. Default 8.
    pub burst_deltas: u64,
    /// The shortest silence after the first delta that is a stall. Default 2000 ms.
    pub stall_ms: u64,
    /// One chunk with at least this share of the deltas: `buffered`. Default 0.5.
    pub buffered_share: f64,
    /// Bursts with at least this share of the deltas: `bursty`. Default 0.2.
    pub bursty_share: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            enabled: true,
            min_deltas: 10,
            pause_ms: 250,
            pace_factor: 8,
            burst_deltas: 8,
            stall_ms: 2000,
            buffered_share: 0.5,
            bursty_share: 0.2,
        }
    }
}

/// `stream_health` in the summary.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct HealthReport {
    pub verdict: Verdict,
    /// Deltas judged: content, reasoning and tool-argument deltas (every
    /// event but keepalives for a stream of an unknown format).
    pub content_deltas: u64,
    pub largest_burst: u64,
    pub burst_share: f64,
    pub longest_stall_ms: f64,
    /// None for a stream of an unknown format (no phases).
    pub stall_phase: Option<Phase>,
    pub events_per_chunk_max: u64,
    pub events_per_chunk_p50: u64,
    pub end_marker: bool,
    pub keepalives: u64,
}

#[derive(Debug)]
pub struct StreamHealth {
    limits: Thresholds,
    /// Whether deltas have phases (false: a stream of an unknown format).
    phased: bool,
    request_start_us: u64,
    response_start_us: Option<u64>,
    /// Deltas in the chunk being read, and the phase of its last one.
    chunk_deltas: u64,
    chunk_phase: Phase,
    deltas: u64,
    /// When the last chunk with deltas arrived, and the phase it left.
    last_progress_us: Option<u64>,
    phase: Phase,
    /// Running average of the silences between chunks that were not pauses.
    pace_us: Option<u64>,
    largest_chunk: u64,
    burst_total: u64,
    longest_silence_us: u64,
    longest_silence_phase: Phase,
    /// The longest silence after the first delta not followed by a burst.
    longest_stall_us: u64,
    events_per_chunk: LogHistogram,
    keepalives: u64,
}

impl StreamHealth {
    pub fn new(limits: Thresholds, phased: bool, request_start_us: u64) -> Self {
        StreamHealth {
            limits,
            phased,
            request_start_us,
            response_start_us: None,
            chunk_deltas: 0,
            chunk_phase: Phase::FirstToken,
            deltas: 0,
            last_progress_us: None,
            phase: Phase::FirstToken,
            pace_us: None,
            largest_chunk: 0,
            burst_total: 0,
            longest_silence_us: 0,
            longest_silence_phase: Phase::FirstToken,
            longest_stall_us: 0,
            events_per_chunk: LogHistogram::default(),
            keepalives: 0,
        }
    }

    /// The response headers arrived: silences are counted from here.
    pub fn response_started(&mut self, now_us: u64) {
        self.response_start_us.get_or_insert(now_us);
    }

    /// A delta of the chunk being read.
    pub fn on_delta(&mut self, phase: Phase) {
        self.chunk_deltas += 1;
        self.chunk_phase = phase;
    }

    pub fn on_keepalives(&mut self, n: u64) {
        self.keepalives += n;
    }

    /// The chunk that arrived at `now_us` has been read; it completed `events` events.
    pub fn end_chunk(&mut self, now_us: u64, events: u64) {
        self.events_per_chunk.record(events);
        self.close_chunk(now_us);
    }

    fn close_chunk(&mut self, now_us: u64) {
        let n = std::mem::take(&mut self.chunk_deltas);
        if n == 0 {
            return;
        }
        let limits = &self.limits;
        let silence_from = self
            .last_progress_us
            .or(self.response_start_us)
            .unwrap_or(self.request_start_us);
        let silence = now_us.saturating_sub(silence_from);
        // The first chunk's wait is counted from the request: a fully
        // buffered answer may bring its headers with its body.
        let wait = match self.last_progress_us {
            Some(last) => now_us.saturating_sub(last),
            None => now_us.saturating_sub(self.request_start_us),
        };
        let pace_limit = self
            .pace_us
            .map_or(0, |pace| pace.saturating_mul(limits.pace_factor));
        let pause = wait >= limits.pause_ms.saturating_mul(1000) && wait >= pace_limit;
        let burst = pause && n >= limits.burst_deltas;
        if burst {
            self.burst_total += n;
        }
        if self.last_progress_us.is_some() && !pause {
            // A running average over about the last 8 silences.
            self.pace_us = Some(match self.pace_us {
                Some(pace) => pace.saturating_mul(7).saturating_add(wait) / 8,
                None => wait,
            });
        }
        self.note_silence(silence, burst);
        self.deltas += n;
        self.largest_chunk = self.largest_chunk.max(n);
        self.last_progress_us = Some(now_us);
        self.phase = self.chunk_phase;
    }

    fn note_silence(&mut self, silence_us: u64, then_burst: bool) {
        if silence_us > self.longest_silence_us {
            self.longest_silence_us = silence_us;
            self.longest_silence_phase = self.phase;
        }
        if self.phase != Phase::FirstToken && !then_burst {
            self.longest_stall_us = self.longest_stall_us.max(silence_us);
        }
    }

    /// When the last delta arrived; None before the first.
    pub fn last_progress_us(&self) -> Option<u64> {
        self.last_progress_us
    }

    /// The stream ended at `end_us`: the verdict and its numbers.
    pub fn report(&mut self, end_us: u64, end_marker: bool) -> HealthReport {
        // Deltas read at the end (an event without its final blank line).
        self.close_chunk(end_us);
        let from = self
            .last_progress_us
            .or(self.response_start_us)
            .unwrap_or(self.request_start_us);
        // The silence before the end counts: a stream that only pings stalls.
        self.note_silence(end_us.saturating_sub(from), false);
        let deltas = self.deltas;
        let share = |n: u64| {
            if deltas == 0 {
                0.0
            } else {
                n as f64 / deltas as f64
            }
        };
        let limits = &self.limits;
        let verdict = if deltas < limits.min_deltas {
            Verdict::TooShort
        } else if share(self.largest_chunk) >= limits.buffered_share {
            Verdict::Buffered
        } else if self.longest_stall_us >= limits.stall_ms.saturating_mul(1000) {
            Verdict::Stalled
        } else if share(self.burst_total) >= limits.bursty_share {
            Verdict::Bursty
        } else {
            Verdict::Smooth
        };
        HealthReport {
            verdict,
            content_deltas: deltas,
            largest_burst: self.largest_chunk,
            burst_share: (share(self.burst_total) * 1000.0).round() / 1000.0,
            longest_stall_ms: self.longest_silence_us as f64 / 1000.0,
            stall_phase: self.phased.then_some(self.longest_silence_phase),
            events_per_chunk_max: self.events_per_chunk.max().unwrap_or(0),
            events_per_chunk_p50: self.events_per_chunk.quantile(0.5).unwrap_or(0),
            end_marker,
            keepalives: self.keepalives,
        }
    }

    /// True while no delta has come for `stall_ms` after the first one
    /// (the live `streams_stalled` gauge).
    pub fn stalled_at(limits: &Thresholds, last_progress_us: u64, now_us: u64) -> bool {
        now_us.saturating_sub(last_progress_us) >= limits.stall_ms.saturating_mul(1000)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1000;

    /// Feeds chunks of (arrival in ms since the request, deltas), one event
    /// per delta; headers at 1 ms; the stream ends 1 ms after its last chunk.
    fn judge(chunks: &[(u64, u64)]) -> HealthReport {
        judge_with(Thresholds::default(), Phase::Content, chunks)
    }

    fn judge_with(limits: Thresholds, phase: Phase, chunks: &[(u64, u64)]) -> HealthReport {
        let mut h = StreamHealth::new(limits, true, 0);
        h.response_started(MS);
        for &(at_ms, deltas) in chunks {
            for _ in 0..deltas {
                h.on_delta(phase);
            }
            h.end_chunk(at_ms * MS, deltas);
        }
        let end = chunks.last().map_or(2, |c| c.0 + 1);
        h.report(end * MS, true)
    }

    fn paced(from_ms: u64, every_ms: u64, n: u64) -> Vec<(u64, u64)> {
        (0..n).map(|i| (from_ms + i * every_ms, 1)).collect()
    }

    #[test]
    fn one_delta_per_chunk_at_a_steady_pace_is_smooth() {
        let r = judge(&paced(300, 40, 40));
        assert_eq!(r.verdict, Verdict::Smooth, "{r:?}");
        assert_eq!(r.largest_burst, 1);
        assert_eq!(r.content_deltas, 40);
        assert_eq!(r.events_per_chunk_p50, 1);
        assert_eq!(r.stall_phase, Some(Phase::FirstToken));
        assert_eq!(r.longest_stall_ms, 299.0);
    }

    #[test]
    fn coalescing_at_the_streams_own_pace_is_smooth() {
        // 300 deltas 3 ms apart, read 2 to 5 at a time.
        let mut chunks = Vec::new();
        let (mut at, mut left, mut size) = (200, 300, 2);
        while left > 0 {
            let n = size.min(left);
            chunks.push((at, n));
            left -= n;
            at += 3 * n;
            size = 2 + (size + 1) % 4;
        }
        let r = judge(&chunks);
        assert_eq!(r.verdict, Verdict::Smooth, "{r:?}");
        assert!(r.largest_burst <= 5);
    }

    #[test]
    fn one_delta_then_a_silence_then_the_rest_at_once_is_buffered() {
        let r = judge(&[(300, 1), (1800, 40)]);
        assert_eq!(r.verdict, Verdict::Buffered, "{r:?}");
        assert_eq!(r.largest_burst, 40);
        assert!(r.burst_share > 0.9);
        assert_eq!(r.longest_stall_ms, 1500.0);
        assert_eq!(r.stall_phase, Some(Phase::Content));
    }

    #[test]
    fn everything_in_one_chunk_after_a_wait_is_buffered() {
        let r = judge(&[(2000, 41)]);
        assert_eq!(r.verdict, Verdict::Buffered, "{r:?}");
        assert_eq!(r.burst_share, 1.0);
    }

    #[test]
    fn a_silence_then_the_normal_pace_is_a_stall() {
        let mut chunks = paced(300, 40, 20);
        chunks.extend(paced(300 + 19 * 40 + 3000, 40, 20));
        let r = judge(&chunks);
        assert_eq!(r.verdict, Verdict::Stalled, "{r:?}");
        assert_eq!(r.longest_stall_ms, 3000.0);
        assert_eq!(r.stall_phase, Some(Phase::Content));
        // The control: the same stream without the silence is smooth.
        assert_eq!(judge(&paced(300, 40, 40)).verdict, Verdict::Smooth);
    }

    #[test]
    fn a_silence_before_the_first_token_is_slow_not_stalled() {
        let r = judge_with(
            Thresholds::default(),
            Phase::Reasoning,
            &paced(5000, 40, 30),
        );
        assert_eq!(r.verdict, Verdict::Smooth, "{r:?}");
        assert_eq!(r.longest_stall_ms, 4999.0);
        assert_eq!(r.stall_phase, Some(Phase::FirstToken));
    }

    #[test]
    fn regular_bursts_after_pauses_are_bursty() {
        // A proxy flushing every 500 ms, 10 deltas at a time, 100 deltas.
        let chunks: Vec<(u64, u64)> = (1..=10).map(|i| (i * 500, 10)).collect();
        let r = judge(&chunks);
        assert_eq!(r.verdict, Verdict::Bursty, "{r:?}");
        assert_eq!(r.burst_share, 1.0);
        // A slow model at one delta per 500 ms is not.
        assert_eq!(judge(&paced(500, 500, 20)).verdict, Verdict::Smooth);
    }

    #[test]
    fn a_short_answer_in_one_chunk_is_too_short() {
        let r = judge(&[(300, 4)]);
        assert_eq!(r.verdict, Verdict::TooShort, "{r:?}");
        let limits = Thresholds {
            min_deltas: 3,
            ..Thresholds::default()
        };
        assert_eq!(
            judge_with(limits, Phase::Content, &[(300, 4)]).verdict,
            Verdict::Buffered
        );
    }

    #[test]
    fn keepalives_are_not_progress() {
        let mut h = StreamHealth::new(Thresholds::default(), true, 0);
        h.response_started(0);
        for i in 0..12 {
            h.on_delta(Phase::Content);
            h.end_chunk((100 + i * 40) * MS, 1);
        }
        // Pings every 500 ms for 3 s, then the end.
        for i in 1..=6 {
            h.on_keepalives(1);
            h.end_chunk((600 + i * 500) * MS, 1);
        }
        let r = h.report(3700 * MS, false);
        assert_eq!(r.verdict, Verdict::Stalled, "{r:?}");
        assert_eq!(r.keepalives, 6);
        assert_eq!(r.longest_stall_ms, 3700.0 - 540.0);
        assert!(!r.end_marker);
        assert!(StreamHealth::stalled_at(
            &Thresholds::default(),
            540 * MS,
            2540 * MS
        ));
        assert!(!StreamHealth::stalled_at(
            &Thresholds::default(),
            540 * MS,
            2539 * MS
        ));
    }

    #[test]
    fn a_stream_of_an_unknown_format_has_no_phases() {
        let mut h = StreamHealth::new(Thresholds::default(), false, 0);
        h.on_delta(Phase::Content);
        h.end_chunk(10 * MS, 1);
        assert_eq!(h.report(20 * MS, false).stall_phase, None);
    }
}
