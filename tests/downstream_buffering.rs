//! The buffering hops the streaming-health verdicts (issue 10) are proven
//! against, with real parts: Debian's nginx in front of streamtap's Envoy, and
//! an Envoy whose Lua filter buffers the response behind it. Each buffering case
//! has a control that streams live through the same parts, so the checks can fail.
//!
//! Needs `make build venv nginx`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::time::Duration;
use support::timeline::{patterns, Timeline};
use support::{DownstreamStack, Run};
use testbed::nginx::NginxOptions;

const GZIP: (&str, &str) = ("accept-encoding", "gzip");

/// Live: at least 30 reads, spread over at least 1.2 s; the bytes unchanged.
fn assert_live(run: &Run, sent_via: &str) {
    assert_eq!(run.got.status, 200, "{}", run.describe());
    assert!(
        run.reads() >= 30 && run.read_span() >= Duration::from_millis(1200),
        "{sent_via}: expected a live stream (≥ 30 reads over ≥ 1.2 s), got {} reads over {:?}\n{}",
        run.reads(),
        run.read_span(),
        run.describe()
    );
    assert_eq!(run.decoded_body(), run.served.sent, "{}", run.describe());
}

fn smooth_checked() -> Timeline {
    let t = patterns::smooth();
    assert_eq!((t.writes.len(), t.deltas()), (40, 40));
    t
}

#[test]
fn timelines_have_the_shapes_the_tests_need() {
    let ms = Duration::from_millis;
    let cases: Vec<(&str, Timeline, usize, usize, Duration)> = vec![
        ("smooth", patterns::smooth(), 40, 40, ms(1560)),
        ("fast", patterns::fast(), 300, 300, ms(897)),
        (
            "first_then_wall",
            patterns::first_then_wall(),
            2,
            41,
            ms(1500),
        ),
        ("one_wall", patterns::one_wall(), 1, 40, ms(2000)),
        (
            "stall_mid_stream",
            patterns::stall_mid_stream(),
            40,
            40,
            ms(3000 + 38 * 40),
        ),
        (
            "slow_start_reasoning",
            patterns::slow_start_reasoning(),
            30,
            30,
            ms(5000 + 29 * 40),
        ),
        ("too_short", patterns::too_short(), 1, 4, ms(0)),
        (
            "anthropic_keepalives",
            patterns::anthropic_keepalives(),
            26,
            20,
            ms(9 * 40 + 3000 + 10 * 40),
        ),
    ];
    for (name, t, writes, deltas, duration) in cases {
        assert_eq!(t.writes.len(), writes, "{name}: writes");
        assert_eq!(t.deltas(), deltas, "{name}: deltas");
        assert_eq!(t.duration(), duration, "{name}: duration");
        let first_pause = match name {
            "one_wall" => ms(2000),
            "slow_start_reasoning" => ms(5000),
            _ => Duration::ZERO,
        };
        assert_eq!(t.writes[0].0, first_pause, "{name}: first pause");
        let body = String::from_utf8(t.body()).unwrap();
        // Every delta end is the end of an event.
        for &end in &t.delta_ends {
            assert!(body[..end].ends_with("\n\n"), "{name}: delta end {end}");
        }
        if t.path == "/v1/chat/completions" {
            assert!(body.starts_with("data: {") && body.contains("\"role\":\"assistant\""));
            assert!(body.ends_with("data: [DONE]\n\n"), "{name}");
            assert!(body.contains("\"finish_reason\":\"stop\""), "{name}");
            assert!(
                body.contains(&format!("\"completion_tokens\":{deltas}")),
                "{name}"
            );
        } else {
            assert!(body.starts_with("event: message_start\n"), "{name}");
            assert!(body.ends_with("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"));
            assert_eq!(body.matches("event: ping\n").count(), 6);
        }
    }
    let reasoning = String::from_utf8(patterns::slow_start_reasoning().body()).unwrap();
    assert_eq!(reasoning.matches("\"reasoning_content\":").count(), 30);
    // The 3 s stall sits between delta 20 and delta 21.
    let stall = patterns::stall_mid_stream();
    assert_eq!(stall.writes[20].0, ms(3000));
    assert!(stall.writes[1..20].iter().all(|w| w.0 == ms(40)));
}

/// nginx with `gzip on` for event-streams, the client asking for gzip: the
/// 40 × 40 ms stream arrives as a wall of text at the end.
#[test]
fn nginx_gzip_turns_a_live_stream_into_a_wall_of_text() {
    let chain = DownstreamStack::behind_nginx(NginxOptions::default().with_gzip_sse(true));
    let run = chain.call(&smooth_checked(), &[GZIP]);
    eprintln!("{}", run.describe());
    assert_eq!(run.got.status, 200, "{}", run.describe());
    assert_eq!(
        run.got.header("content-encoding"),
        Some("gzip"),
        "{}",
        run.describe()
    );
    assert!(
        run.reads() <= 3,
        "expected a wall of text (≤ 3 reads), got {} reads\n{}",
        run.reads(),
        run.describe()
    );
    assert!(
        run.last_read() - run.first_write() >= Duration::from_millis(1400),
        "the last read came {:?} after the first write\n{}",
        run.last_read() - run.first_write(),
        run.describe()
    );
    assert_eq!(
        run.decoded_body(),
        run.served.sent,
        "gunzipped body differs\n{}",
        run.describe()
    );
    assert_eq!(run.served.sent, smooth_checked().body());
    assert!(run.served.complete);
    // streamtap's Envoy saw the call and exported it.
    let summary = chain.summary_for(&run);
    assert!(summary.is_object(), "{summary}");
}

/// Control: the same nginx without gzip (`proxy_buffering on`, nginx's
/// default) passes the stream on live.
#[test]
fn nginx_without_gzip_streams_live() {
    let chain = DownstreamStack::behind_nginx(NginxOptions::default());
    let run = chain.call(&smooth_checked(), &[GZIP]);
    eprintln!("{}", run.describe());
    assert_eq!(
        run.got.header("content-encoding"),
        None,
        "{}",
        run.describe()
    );
    assert_live(&run, "nginx, gzip off");
}

/// `x-accel-buffering: no` from the upstream turns nginx's buffering off, gzip included.
#[test]
fn nginx_gzip_streams_live_when_the_upstream_says_x_accel_buffering_no() {
    let chain = DownstreamStack::behind_nginx(NginxOptions::default().with_gzip_sse(true));
    let t = smooth_checked();
    let run = chain.call_with(&t, t.script().header("x-accel-buffering", "no"), &[GZIP]);
    eprintln!("{}", run.describe());
    assert_eq!(
        run.got.header("content-encoding"),
        Some("gzip"),
        "{}",
        run.describe()
    );
    assert_live(&run, "nginx, gzip on, x-accel-buffering: no");
}

/// An upstream that buffers (an Envoy whose Lua filter reads the whole body):
/// streamtap's Envoy, and its client, get the stream in one burst after the
/// upstream's last write.
#[test]
fn a_buffering_upstream_reaches_the_client_in_one_burst() {
    let chain = DownstreamStack::buffering_upstream();
    let run = chain.call(&smooth_checked(), &[]);
    eprintln!("{}", run.describe());
    assert_eq!(run.got.status, 200, "{}\n{}", run.describe(), chain.logs());
    assert!(
        run.reads() <= 3,
        "expected one burst (≤ 3 reads), got {} reads\n{}",
        run.reads(),
        run.describe()
    );
    assert!(
        run.first_read() >= run.last_write(),
        "the client read before the upstream's last write\n{}",
        run.describe()
    );
    assert_eq!(run.got.body, run.served.sent);
    chain.summary_for(&run);
}

/// Control: without the buffering hop, the same stream reaches the client live.
#[test]
fn the_direct_chain_streams_live() {
    let chain = DownstreamStack::direct();
    let run = chain.call(&smooth_checked(), &[]);
    eprintln!("{}", run.describe());
    assert_live(&run, "direct");
}

/// The patterns stream through streamtap unchanged and it summarizes them:
/// provider, completed, every delta counted (usage reported). The quick ones
/// by default; `STREAMTAP_ALL_PATTERNS=1` runs all eight (~20 s).
#[test]
fn the_patterns_stream_through_streamtap() {
    let mut cases = vec![
        ("fast", patterns::fast()),
        ("too_short", patterns::too_short()),
        ("first_then_wall", patterns::first_then_wall()),
        ("anthropic_keepalives", patterns::anthropic_keepalives()),
    ];
    if std::env::var_os("STREAMTAP_ALL_PATTERNS").is_some() {
        cases.extend([
            ("smooth", patterns::smooth()),
            ("one_wall", patterns::one_wall()),
            ("stall_mid_stream", patterns::stall_mid_stream()),
            ("slow_start_reasoning", patterns::slow_start_reasoning()),
        ]);
    }
    let chain = DownstreamStack::direct();
    for (name, t) in cases {
        let run = chain.call(&t, &[]);
        eprintln!("{name}: {} reads over {:?}", run.reads(), run.read_span());
        assert_eq!(run.got.body, t.body(), "{name}");
        let waited = run.last_write() - run.served.started;
        assert!(
            waited >= t.duration() && waited < t.duration() + Duration::from_millis(500),
            "{name}: the last write left {waited:?} after the head, due at {:?}",
            t.duration()
        );
        let s = chain.summary_for(&run);
        let provider = if t.path == "/v1/messages" {
            "anthropic"
        } else {
            "openai"
        };
        assert_eq!(s["provider"], provider, "{name}: {s}");
        assert_eq!(s["outcome"], "completed", "{name}: {s}");
        assert_eq!(s["output_tokens"], t.deltas(), "{name}: {s}");
        if name == "slow_start_reasoning" {
            assert!(
                s["reasoning"].as_str().is_some_and(|r| !r.is_empty()),
                "{s}"
            );
            assert!(s["ttft_ms"].as_f64().is_some_and(|ms| ms >= 5000.0), "{s}");
        }
    }
}
