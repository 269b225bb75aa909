//! The collector's pages in a real browser (issue 11): a real Envoy with
//! `dist/streamtap.wasm` (`capture.timeline` on) exports the summaries of a
//! smooth call and of a buffered one; headless Chromium loads `/` and each
//! `/calls/{id}` from the collector, and the test reads the DOM it rendered
//! (`--dump-dom`): both calls are listed, the smooth call's points spread over
//! the plot while the buffered call's stand in a vertical wall. A model answer
//! that is markup renders as text, and no request header shows. Screenshots
//! are kept under `<target>/test-artefacts/` for people (not asserted on).
//!
//! Needs Chromium (`make chromium`; `make test` installs it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use serde_json::Value;
use std::path::PathBuf;
use support::timeline::{patterns, Timeline};
use support::{DownstreamStack, FaultStack};
use testbed::browser;
use testbed::scripted::Script;
use testbed::viewer::{percent_encode, PLOT_WIDTH};

const CONFIG: &str = r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":50,"timeout_ms":1000},
    "capture":{"timeline":true,"request_headers":["x-user-id","authorization"]}}"#;
const HEADERS: [(&str, &str); 2] = [
    ("x-user-id", "user-visible-in-json-only"),
    ("authorization", "Bearer sk-viewer-SECRET-1"),
];
const SCRIPT: &str = "<script>document.title='pwned'</script>";

/// One `<circle>` of the timeline: cx, cy and its `data-t-ms`.
#[derive(Debug, Clone, Copy)]
struct Circle {
    cx: f64,
    t_ms: f64,
}

/// The value of attribute `name` in the tag text `tag`.
fn attr<'a>(tag: &'a str, name: &str) -> Option<&'a str> {
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    tag.get(start..)?.split('"').next()
}

fn circles(dom: &str) -> Vec<Circle> {
    dom.split("<circle ")
        .skip(1)
        .map(|rest| {
            let tag = format!(" {}", rest.split('>').next().unwrap());
            let num = |name: &str| -> f64 {
                attr(&tag, name)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or_else(|| panic!("circle without a numeric {name}: {tag}"))
            };
            Circle {
                cx: num("cx"),
                t_ms: num("data-t-ms"),
            }
        })
        .collect()
}

fn spread(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let max = values.clone().fold(f64::MIN, f64::max);
    let min = values.fold(f64::MAX, f64::min);
    max - min
}

fn artefact(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("test-artefacts").join(name)
}

/// Keeps a screenshot; a failure is only reported.
fn keep_screenshot(url: &str, name: &str) {
    let path = artefact(name);
    match browser::screenshot(url, &path) {
        Ok(()) => eprintln!("screenshot: {}", path.display()),
        Err(e) => eprintln!("no screenshot of {url}: {e}"),
    }
}

fn dom(url: &str) -> String {
    browser::dump_dom(url).unwrap_or_else(|e| panic!("chromium could not load {url}: {e}"))
}

#[test]
fn the_pages_in_chromium_show_a_smooth_call_spread_and_a_buffered_one_as_a_wall() {
    assert!(
        browser::chromium_bin().is_some(),
        "no chromium: make chromium (or CHROMIUM_BIN=...)"
    );
    let chain = DownstreamStack {
        nginx: None,
        stack: FaultStack::start(CONFIG),
        buffering: None,
    };
    let call = |t: &Timeline| -> Value {
        let run = chain.call(t, &HEADERS);
        assert_eq!(run.got.body, t.body(), "bytes changed\n{}", run.describe());
        chain.summary_for(&run)
    };
    let smooth = call(&patterns::smooth());
    let wall = call(&patterns::one_wall());
    for (s, verdict) in [(&smooth, "smooth"), (&wall, "buffered")] {
        assert_eq!(s["stream_health"]["verdict"], verdict, "{s}");
        assert!(s["timeline"].is_object(), "no timeline: {s}");
        assert_eq!(
            s["request_headers"]["x-user-id"], "user-visible-in-json-only",
            "{s}"
        );
    }
    // An answer that is markup, through the same Envoy.
    let body = format!(
        "{}{}{}",
        support::chat_role_event(),
        support::chat_event(SCRIPT),
        support::chat_end_events(1)
    );
    let (_, served, _) = chain.stack.call(
        "/v1/chat/completions",
        Script::sse(body),
        &HEADERS,
        &support::chat_request(true),
    );
    let markup = chain.stack.summary_for(&served);
    assert_eq!(markup["content"], SCRIPT, "{markup}");

    let base = format!("http://{}", chain.stack.collector.addr);
    let id = |s: &Value| s["id"].as_str().unwrap().to_string();
    let page_of = |s: &Value| format!("{base}/calls/{}", percent_encode(&id(s)));

    // The list: the three calls just made, newest first, under the health.
    let list = dom(&format!("{base}/"));
    assert!(list.contains("<section id=\"health\">"), "{list}");
    let rows: Vec<&str> = list
        .split("<tr class=\"call\" data-id=\"")
        .skip(1)
        .map(|rest| rest.split('"').next().unwrap())
        .collect();
    assert_eq!(rows, [id(&markup), id(&wall), id(&smooth)], "{list}");
    assert!(list.contains("<span class=\"v-buffered\">buffered</span>"));
    let filtered = dom(&format!("{base}/?verdict=buffered"));
    assert_eq!(
        filtered.matches("<tr class=\"call\"").count(),
        1,
        "{filtered}"
    );
    assert!(filtered.contains(&id(&wall)));
    keep_screenshot(&format!("{base}/"), "call_viewer-list.png");

    // The smooth call: 40 points spread over the plot, ~40 ms apart.
    let smooth_dom = dom(&page_of(&smooth));
    let points = circles(&smooth_dom);
    assert_eq!(points.len(), 40, "{smooth_dom}");
    let x_spread = spread(points.iter().map(|c| c.cx));
    assert!(
        x_spread >= 0.6 * PLOT_WIDTH,
        "smooth call's points span {x_spread:.1} of {PLOT_WIDTH} px: {points:?}"
    );
    let t_spread = spread(points.iter().map(|c| c.t_ms));
    assert!(
        (1400.0..1900.0).contains(&t_spread),
        "39 gaps of 40 ms: {t_spread} ms"
    );
    assert!(!smooth_dom.contains("class=\"burst\""), "{smooth_dom}");
    assert!(smooth_dom.contains("<div class=\"text\" id=\"content\">"));
    keep_screenshot(&page_of(&smooth), "call_viewer-smooth.png");

    // The buffered call: 40 points in a vertical wall 2 s after the request, marked a burst.
    let wall_dom = dom(&page_of(&wall));
    let points = circles(&wall_dom);
    assert!(points.len() >= 40, "{wall_dom}");
    let x_spread = spread(points.iter().map(|c| c.cx));
    assert!(
        x_spread <= 0.02 * PLOT_WIDTH,
        "buffered call's points span {x_spread:.1} of {PLOT_WIDTH} px: {points:?}"
    );
    assert!(
        points.iter().all(|c| c.t_ms >= 1900.0),
        "the wall is 2 s after the request: {points:?}"
    );
    assert!(wall_dom.contains("class=\"burst\""), "burst not marked");
    keep_screenshot(&page_of(&wall), "call_viewer-buffered.png");

    // Markup in the answer renders as text; no request header shows on any page.
    let markup_dom = dom(&page_of(&markup));
    assert!(
        markup_dom.contains("&lt;script&gt;document.title='pwned'&lt;/script&gt;"),
        "{markup_dom}"
    );
    assert!(!markup_dom.contains("<script"), "{markup_dom}");
    assert!(!markup_dom.contains("<title>pwned"), "{markup_dom}");
    for page in [&list, &smooth_dom, &wall_dom, &markup_dom] {
        for hidden in [
            "sk-viewer-SECRET-1",
            "user-visible-in-json-only",
            "[redacted]",
        ] {
            assert!(!page.contains(hidden), "{hidden} shown");
        }
    }

    // An unknown call: the 404 page.
    let missing = dom(&format!("{base}/calls/no-such-call"));
    assert!(missing.contains("No call no-such-call"), "{missing}");
}
