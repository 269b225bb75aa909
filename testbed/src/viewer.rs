//! The collector's web pages: server-rendered HTML with inline CSS and SVG,
//! no JavaScript, nothing fetched from elsewhere (it works offline).
//!
//! | page | shows |
//! |---|---|
//! | `GET /[?verdict=V]` | the streaming health of the last 5 minutes, then the latest calls (at most [`MAX_ROWS`]), newest first |
//! | `GET /calls/{id}` | one call: its summary, its timeline (token index over time since the request) and its answer |
//!
//! Pure functions from summaries (`serde_json::Value`) to HTML strings.
//! Every value a summary carries goes through [`escape`]; `request_headers`
//! and `request_content` are never rendered (a header the config names could
//! carry a credential).

use serde_json::Value;
use std::fmt::Write as _;

use crate::collector::VERDICTS;

/// Rows of the call list, at most.
pub const MAX_ROWS: usize = 200;
/// A silence between two deltas at least this long is shaded as a stall.
pub const STALL_MARK_MS: f64 = 1000.0;
/// At least this many deltas in one body chunk are marked as a burst.
pub const BURST_MARK_DELTAS: u64 = 8;
/// Circles drawn at most: beyond it, one per timeline entry.
pub const MAX_CIRCLES: u64 = 5000;

/// The SVG's size and its plot area (pixels).
pub const SVG_WIDTH: f64 = 720.0;
pub const SVG_HEIGHT: f64 = 420.0;
pub const PLOT_LEFT: f64 = 60.0;
pub const PLOT_TOP: f64 = 20.0;
pub const PLOT_WIDTH: f64 = 640.0;
pub const PLOT_HEIGHT: f64 = 340.0;

/// `&`, `<`, `>`, `"` and `'` as entities: safe in text and in quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Everything but RFC 3986's unreserved characters as `%XX`: an id in a URL path.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

const STYLE: &str = "
body{font-family:sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:.2em 0 .6em}
h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.25em .6em;text-align:left;vertical-align:top}
th{background:#f4f4f4}
td.num{text-align:right;font-variant-numeric:tabular-nums}
a{color:#0550ae}
.filters a{margin-right:.7em}
.filters a.on{font-weight:bold;text-decoration:none;color:#222}
.status-healthy{color:#1a7f37}.status-degraded{color:#cf222e}.status-idle{color:#666}
.v-smooth{color:#1a7f37}.v-bursty{color:#9a6700}.v-buffered{color:#cf222e}.v-stalled{color:#cf222e}.v-too_short{color:#666}
.call-body{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.answer{flex:1 1 320px;max-width:60em}
.text{white-space:pre-wrap;background:#f6f8fa;border:1px solid #ddd;padding:.6em;font-family:monospace;font-size:.9em;max-height:40em;overflow:auto}
svg{background:#fff;border:1px solid #ddd}
svg text{font-size:12px;fill:#333}
svg .axis{stroke:#333;stroke-width:1}
svg .grid{stroke:#eee;stroke-width:1}
svg .line{fill:none;stroke:#8ab;stroke-width:1}
svg circle.content{fill:#0969da}
svg circle.reasoning{fill:#8250df}
svg circle.tool{fill:#bf8700}
svg rect.stall{fill:#cf222e;fill-opacity:.12}
svg .burst{stroke:#cf222e;stroke-width:2}
svg text.burst-label{fill:#cf222e;stroke:none}
.note{color:#666;font-size:.9em}
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style></head>\n<body>\n{body}</body></html>\n",
        escape(title)
    )
}

/// The value as text: strings as they are, numbers and the rest as JSON,
/// `–` for null or absent.
fn text(value: &Value) -> String {
    match value {
        Value::Null => "–".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Milliseconds, rounded: `151 ms`; `–` when absent.
fn ms(value: &Value) -> String {
    value
        .as_f64()
        .map_or_else(|| "–".to_string(), |ms| format!("{ms:.0} ms"))
}

/// `start_unix_ms` as `2025-01-31 13:04:05.123 UTC`; `–` when absent.
pub fn utc_time(unix_ms: &Value) -> String {
    let Some(total_ms) = unix_ms.as_i64() else {
        return "–".to_string();
    };
    let (secs, millis) = (total_ms.div_euclid(1000), total_ms.rem_euclid(1000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{millis:03} UTC",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

fn verdict_cell(summary: &Value) -> String {
    match summary["stream_health"]["verdict"].as_str() {
        Some(v) => format!("<span class=\"v-{0}\">{0}</span>", escape(v)),
        None => "–".to_string(),
    }
}

fn call_href(summary: &Value) -> Option<String> {
    summary["id"]
        .as_str()
        .map(|id| format!("/calls/{}", percent_encode(id)))
}

/// The streaming-health block (the `/health/streaming` object).
fn health_block(health: &Value) -> String {
    let status = health["status"].as_str().unwrap_or("idle");
    let mut out = format!(
        "<section id=\"health\"><h2>Streaming health, last 5 minutes: <span class=\"status-{0}\">{0}</span></h2>\n",
        escape(status)
    );
    if let Some(reasons) = health["reasons"].as_array().filter(|r| !r.is_empty()) {
        out.push_str("<ul class=\"reasons\">");
        for reason in reasons {
            let _ = write!(out, "<li>{}</li>", escape(&text(reason)));
        }
        out.push_str("</ul>\n");
    }
    let share = health["not_smooth_share"]
        .as_f64()
        .map_or_else(|| "–".to_string(), |s| format!("{:.0}%", s * 100.0));
    let _ = write!(
        out,
        "<p>{} calls ({} streamed), {} not completed; TTFT p50 {}, p95 {}; not smooth {}.</p>\n<p>",
        escape(&text(&health["calls_last_5m"])),
        escape(&text(&health["streamed_calls_last_5m"])),
        escape(&text(&health["error_calls_last_5m"])),
        escape(&ms(&health["ttft_p50_ms"])),
        escape(&ms(&health["ttft_p95_ms"])),
        escape(&share),
    );
    let counts: Vec<String> = VERDICTS
        .iter()
        .map(|v| {
            format!(
                "<span class=\"v-{v}\">{v}</span> {}",
                escape(&text(&health["verdicts"][v]))
            )
        })
        .collect();
    out.push_str(&counts.join(", "));
    out.push_str("</p></section>\n");
    out
}

/// `/`: the health block, then `calls` (oldest first, as the collector keeps
/// them; already filtered) newest first, at most [`MAX_ROWS`]. `verdict` is
/// the filter in force (`Some(None)`: `none`), for the links.
pub fn list_page(calls: &[&Value], health: &Value, verdict: Option<Option<&str>>) -> String {
    let mut body = String::from("<h1>streamtap: recent calls</h1>\n");
    body.push_str(&health_block(health));
    body.push_str("<p class=\"filters\">Verdict: ");
    let mut links = vec![("all", "/".to_string(), verdict.is_none())];
    for v in VERDICTS {
        links.push((v, format!("/?verdict={v}"), verdict == Some(Some(v))));
    }
    links.push(("none", "/?verdict=none".to_string(), verdict == Some(None)));
    for (label, href, on) in links {
        let class = if on { " class=\"on\"" } else { "" };
        let _ = write!(body, "<a href=\"{href}\"{class}>{label}</a>");
    }
    body.push_str("</p>\n");

    let shown: Vec<&&Value> = calls.iter().rev().take(MAX_ROWS).collect();
    let _ = writeln!(
        body,
        "<p class=\"note\">{} of {} matching calls, newest first.</p>",
        shown.len(),
        calls.len()
    );
    body.push_str("<table id=\"calls\"><thead><tr><th>time</th><th>model</th><th>provider</th><th>outcome</th><th>verdict</th><th>TTFT</th><th>tokens in / out</th><th>id</th></tr></thead><tbody>\n");
    for summary in shown {
        let id = text(&summary["id"]);
        let id_cell = match call_href(summary) {
            Some(href) => format!("<a href=\"{}\">{}</a>", escape(&href), escape(&id)),
            None => escape(&id),
        };
        let _ = writeln!(
            body,
            "<tr class=\"call\" data-id=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td>{id_cell}</td></tr>",
            escape(&id),
            escape(&utc_time(&summary["start_unix_ms"])),
            escape(&text(&summary["model"])),
            escape(&text(&summary["provider"])),
            escape(&text(&summary["outcome"])),
            verdict_cell(summary),
            escape(&ms(&summary["ttft_ms"])),
            escape(&text(&summary["input_tokens"])),
            escape(&text(&summary["output_tokens"])),
        );
    }
    body.push_str("</tbody></table>\n<p class=\"note\">Summaries as JSON: <a href=\"/calls\">/calls</a>, health: <a href=\"/health/streaming\">/health/streaming</a>.</p>\n");
    page("streamtap: recent calls", &body)
}

/// `/calls/{id}` for an id nobody has.
pub fn not_found_page(id: &str) -> String {
    page(
        "streamtap: no such call",
        &format!(
            "<h1>No call {}</h1>\n<p>The collector keeps the latest 10 000 summaries. <a href=\"/\">Recent calls</a></p>\n",
            escape(id)
        ),
    )
}

/// An error page (`/?verdict=wobbly`).
pub fn error_page(message: &str) -> String {
    page(
        "streamtap: bad request",
        &format!(
            "<h1>Bad request</h1>\n<p>{}</p>\n<p><a href=\"/\">Recent calls</a></p>\n",
            escape(message)
        ),
    )
}

/// `/calls/{id}`: the summary, the timeline and the answer.
pub fn call_page(summary: &Value) -> String {
    let id = text(&summary["id"]);
    let mut body = format!(
        "<p><a href=\"/\">← recent calls</a></p>\n<h1>Call <span id=\"call-id\">{}</span></h1>\n",
        escape(&id)
    );
    body.push_str(&summary_table(summary));
    body.push_str("<div class=\"call-body\">\n<div class=\"plot\"><h2>Timeline</h2>\n");
    body.push_str(&timeline_block(&summary["timeline"]));
    body.push_str("</div>\n<div class=\"answer\">\n");
    for (title, key) in [("Answer", "content"), ("Reasoning", "reasoning")] {
        if let Some(t) = summary[key].as_str().filter(|t| !t.is_empty()) {
            let _ = writeln!(
                body,
                "<h2>{title}</h2>\n<div class=\"text\" id=\"{key}\">{}</div>",
                escape(t)
            );
        }
    }
    if summary["content_truncated"] == Value::Bool(true) {
        body.push_str("<p class=\"note\">(truncated at capture.max_content_bytes)</p>\n");
    }
    if let Some(calls) = summary["tool_calls"].as_array().filter(|c| !c.is_empty()) {
        body.push_str("<h2>Tool calls</h2>\n");
        for call in calls {
            let _ = writeln!(
                body,
                "<p><b>{}</b> <span class=\"note\">{}</span></p><div class=\"text\">{}</div>",
                escape(&text(&call["name"])),
                escape(&text(&call["id"])),
                escape(&text(&call["arguments"]))
            );
        }
    }
    if let Some(messages) = summary["request_messages"]
        .as_array()
        .filter(|m| !m.is_empty())
    {
        body.push_str("<h2>Prompt</h2>\n");
        for message in messages {
            let role = message["role"].as_str().unwrap_or("message");
            let content = match &message["content"] {
                Value::String(s) => s.clone(),
                Value::Null => message.to_string(),
                other => serde_json::to_string_pretty(other).unwrap_or_default(),
            };
            let _ = writeln!(
                body,
                "<p><b>{}</b></p><div class=\"text\">{}</div>",
                escape(role),
                escape(&content)
            );
        }
    }
    if let Some(error) = summary["error"].as_str() {
        let _ = writeln!(
            body,
            "<h2>Error</h2>\n<div class=\"text\">{}</div>",
            escape(error)
        );
    }
    body.push_str("</div>\n</div>\n");
    page(&format!("streamtap: call {id}"), &body)
}

fn summary_table(summary: &Value) -> String {
    let h = &summary["stream_health"];
    let tokens = format!(
        "{} in, {} out ({})",
        text(&summary["input_tokens"]),
        text(&summary["output_tokens"]),
        text(&summary["usage_source"])
    );
    let health = if h.is_object() {
        let phase = h["stall_phase"]
            .as_str()
            .map_or_else(String::new, |p| format!(" ({p})"));
        format!(
            "{} deltas, largest burst {}, burst share {:.0}%, longest stall {}{phase}, end marker {}",
            text(&h["content_deltas"]),
            text(&h["largest_burst"]),
            h["burst_share"].as_f64().unwrap_or(0.0) * 100.0,
            ms(&h["longest_stall_ms"]),
            text(&h["end_marker"]),
        )
    } else {
        "no stream_health (not an event stream)".to_string()
    };
    let rows: [(&str, String); 12] = [
        ("time", utc_time(&summary["start_unix_ms"])),
        ("model", text(&summary["model"])),
        ("response model", text(&summary["response_model"])),
        (
            "provider / api",
            format!("{} / {}", text(&summary["provider"]), text(&summary["api"])),
        ),
        (
            "request",
            format!(
                "{} {} → {}",
                text(&summary["method"]),
                text(&summary["path"]),
                text(&summary["status"])
            ),
        ),
        ("outcome", text(&summary["outcome"])),
        ("TTFT", ms(&summary["ttft_ms"])),
        ("duration", ms(&summary["duration_ms"])),
        ("tokens", tokens),
        ("tokens/s", text(&summary["output_tokens_per_s"])),
        ("stream health", health),
        ("finish reasons", text(&summary["finish_reasons"])),
    ];
    let mut out = String::from("<table id=\"summary\">\n");
    for (name, value) in rows {
        let _ = writeln!(out, "<tr><th>{name}</th><td>{}</td></tr>", escape(&value));
    }
    let _ = writeln!(
        out,
        "<tr><th>verdict</th><td id=\"verdict\">{}</td></tr>",
        verdict_cell(summary)
    );
    out.push_str("</table>\n");
    out
}

/// One delta of a timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    /// Since the request started.
    pub t_ms: f64,
    /// 1-based, in arrival order.
    pub index: u64,
    /// `c`, `r` or `t`.
    pub kind: char,
    /// The body chunk (0-based, absolute) its entry started in.
    pub chunk: u64,
}

/// A decoded `timeline`: one point per delta (merged entries' `n` deltas
/// spread linearly over their `span`), or per entry beyond [`MAX_CIRCLES`]
/// deltas (`per_entry`).
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    pub points: Vec<Point>,
    /// Deltas per absolute chunk index, for the chunks with any.
    pub chunk_deltas: Vec<(u64, u64)>,
    pub per_entry: bool,
    pub compacted: bool,
}

fn u64s(timeline: &Value, key: &str) -> Result<Vec<u64>, String> {
    timeline[key]
        .as_array()
        .ok_or_else(|| format!("timeline.{key} is not an array"))?
        .iter()
        .map(|v| {
            v.as_u64()
                .ok_or_else(|| format!("timeline.{key} holds {v}, not a count"))
        })
        .collect()
}

/// Decodes a summary's `timeline` (see the README's "Timeline").
pub fn decode_timeline(timeline: &Value) -> Result<Decoded, String> {
    let unit = timeline["unit"].as_str().unwrap_or("us");
    let per_ms = match unit {
        "us" => 1000.0,
        "ms" => 1.0,
        other => return Err(format!("timeline.unit {other:?} is not us or ms")),
    };
    let t = u64s(timeline, "t")?;
    let span = u64s(timeline, "span")?;
    let n = u64s(timeline, "n")?;
    let chunk = u64s(timeline, "chunk")?;
    let kind: Vec<char> = timeline["kind"]
        .as_str()
        .ok_or("timeline.kind is not a string")?
        .chars()
        .collect();
    let entries = t.len();
    if [span.len(), n.len(), chunk.len(), kind.len()]
        .iter()
        .any(|&len| len != entries)
    {
        return Err(format!(
            "timeline arrays differ in length: t {entries}, span {}, n {}, chunk {}, kind {}",
            span.len(),
            n.len(),
            chunk.len(),
            kind.len()
        ));
    }
    let total: u64 = n.iter().fold(0u64, |sum, &k| sum.saturating_add(k));
    let per_entry = total > MAX_CIRCLES;
    let mut points = Vec::new();
    let mut chunk_deltas: Vec<(u64, u64)> = Vec::new();
    let (mut start_us, mut chunk_at, mut index) = (0u64, 0u64, 0u64);
    for i in 0..entries {
        start_us = start_us.saturating_add(t[i]);
        chunk_at = chunk_at.saturating_add(chunk[i]);
        let (count, spread) = (n[i], span[i]);
        match chunk_deltas.last_mut() {
            Some((c, k)) if *c == chunk_at => *k = k.saturating_add(count),
            _ => chunk_deltas.push((chunk_at, count)),
        }
        if per_entry {
            index = index.saturating_add(count);
            points.push(Point {
                t_ms: (start_us.saturating_add(spread)) as f64 / per_ms,
                index,
                kind: kind[i],
                chunk: chunk_at,
            });
            continue;
        }
        for j in 0..count {
            index += 1;
            let offset = if count > 1 {
                spread as f64 * j as f64 / (count - 1) as f64
            } else {
                0.0
            };
            points.push(Point {
                t_ms: (start_us as f64 + offset) / per_ms,
                index,
                kind: kind[i],
                chunk: chunk_at,
            });
        }
    }
    Ok(Decoded {
        points,
        chunk_deltas,
        per_entry,
        compacted: timeline["compacted"] == Value::Bool(true),
    })
}

fn kind_class(kind: char) -> &'static str {
    match kind {
        'r' => "reasoning",
        't' => "tool",
        _ => "content",
    }
}

/// A round tick step giving at most ~8 ticks over `range`.
fn tick_step(range: f64) -> f64 {
    let raw = (range / 8.0).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|step| *step >= raw)
        .unwrap_or(10.0 * magnitude)
}

/// The timeline's SVG, or a sentence saying why there is none.
pub fn timeline_block(timeline: &Value) -> String {
    if timeline.is_null() {
        return "<p class=\"note\" id=\"no-timeline\">No timeline: <code>capture.timeline</code> is off (or the response was not an event stream).</p>\n".to_string();
    }
    match decode_timeline(timeline) {
        Ok(decoded) if decoded.points.is_empty() => {
            "<p class=\"note\" id=\"no-timeline\">No deltas recorded.</p>\n".to_string()
        }
        Ok(decoded) => timeline_svg(&decoded),
        Err(message) => format!(
            "<p class=\"note\" id=\"no-timeline\">The timeline could not be read: {}</p>\n",
            escape(&message)
        ),
    }
}

/// Token index over time since the request, as the bench's first panel:
/// one circle per delta (`data-t-ms`, `data-index`, class by kind), a line
/// through them, silences ≥ [`STALL_MARK_MS`] shaded (`rect.stall`), chunks
/// with ≥ [`BURST_MARK_DELTAS`] deltas marked (`line.burst`).
pub fn timeline_svg(decoded: &Decoded) -> String {
    let points = &decoded.points;
    let max_ms = points.iter().map(|p| p.t_ms).fold(0.0, f64::max).max(1.0) * 1.05;
    let max_index = points.iter().map(|p| p.index).max().unwrap_or(1) as f64 + 1.0;
    let x = |ms: f64| PLOT_LEFT + ms / max_ms * PLOT_WIDTH;
    let y = |index: f64| PLOT_TOP + PLOT_HEIGHT - index / max_index * PLOT_HEIGHT;
    let bottom = PLOT_TOP + PLOT_HEIGHT;
    let right = PLOT_LEFT + PLOT_WIDTH;

    let mut out = format!(
        "<svg id=\"timeline\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{SVG_WIDTH}\" height=\"{SVG_HEIGHT}\" viewBox=\"0 0 {SVG_WIDTH} {SVG_HEIGHT}\" data-plot-left=\"{PLOT_LEFT}\" data-plot-width=\"{PLOT_WIDTH}\" data-plot-top=\"{PLOT_TOP}\" data-plot-height=\"{PLOT_HEIGHT}\" data-max-ms=\"{max_ms:.3}\">\n"
    );
    // Grid and ticks.
    let step = tick_step(max_ms);
    let mut tick = 0.0;
    while tick <= max_ms {
        let tx = x(tick);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{tx:.1}\" y1=\"{PLOT_TOP}\" x2=\"{tx:.1}\" y2=\"{bottom}\"/><text x=\"{tx:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{tick:.0}</text>",
            bottom + 15.0
        );
        tick += step;
    }
    let step = tick_step(max_index).max(1.0);
    let mut tick = 0.0;
    while tick <= max_index {
        let ty = y(tick);
        let _ = writeln!(
            out,
            "<line class=\"grid\" x1=\"{PLOT_LEFT}\" y1=\"{ty:.1}\" x2=\"{right}\" y2=\"{ty:.1}\"/><text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick:.0}</text>",
            PLOT_LEFT - 5.0,
            ty + 4.0
        );
        tick += step;
    }
    let _ = writeln!(
        out,
        "<line class=\"axis\" x1=\"{PLOT_LEFT}\" y1=\"{bottom}\" x2=\"{right}\" y2=\"{bottom}\"/><line class=\"axis\" x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_LEFT}\" y2=\"{bottom}\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">time since the request (ms)</text><text transform=\"translate(14 {:.1}) rotate(-90)\" text-anchor=\"middle\">delta index</text>",
        PLOT_LEFT + PLOT_WIDTH / 2.0,
        SVG_HEIGHT - 8.0,
        PLOT_TOP + PLOT_HEIGHT / 2.0
    );

    // Stalls: silences between consecutive deltas.
    for pair in points.windows(2) {
        let [a, b] = pair else { continue };
        let gap = b.t_ms - a.t_ms;
        if gap >= STALL_MARK_MS {
            let _ = writeln!(
                out,
                "<rect class=\"stall\" x=\"{:.1}\" y=\"{PLOT_TOP}\" width=\"{:.1}\" height=\"{PLOT_HEIGHT}\" data-from-ms=\"{:.3}\" data-ms=\"{gap:.3}\"><title>silence of {gap:.0} ms</title></rect>",
                x(a.t_ms),
                x(b.t_ms) - x(a.t_ms),
                a.t_ms
            );
        }
    }
    // Bursts: chunks that carried many deltas.
    for &(chunk, deltas) in &decoded.chunk_deltas {
        if deltas < BURST_MARK_DELTAS {
            continue;
        }
        let in_chunk: Vec<&Point> = points.iter().filter(|p| p.chunk == chunk).collect();
        let (Some(first), Some(last)) = (in_chunk.first(), in_chunk.last()) else {
            continue;
        };
        let bx = x(first.t_ms) + 8.0;
        // The label right of the bar, or left of the wall near the right edge.
        let (lx, anchor) = if bx + 70.0 < right {
            (bx + 4.0, "start")
        } else {
            (x(first.t_ms) - 8.0, "end")
        };
        let _ = writeln!(
            out,
            "<line class=\"burst\" x1=\"{bx:.1}\" y1=\"{:.1}\" x2=\"{bx:.1}\" y2=\"{:.1}\" data-chunk=\"{chunk}\" data-deltas=\"{deltas}\"><title>{deltas} deltas in one body chunk</title></line><text class=\"burst-label\" x=\"{lx:.1}\" y=\"{:.1}\" text-anchor=\"{anchor}\">burst ×{deltas}</text>",
            y(first.index as f64),
            y(last.index as f64),
            (y(last.index as f64) + y(first.index as f64)) / 2.0
        );
    }
    // The line, then the circles on top.
    let line: Vec<String> = points
        .iter()
        .map(|p| format!("{:.1},{:.1}", x(p.t_ms), y(p.index as f64)))
        .collect();
    let _ = writeln!(
        out,
        "<polyline class=\"line\" points=\"{}\"/>",
        line.join(" ")
    );
    for p in points {
        let _ = writeln!(
            out,
            "<circle class=\"delta {}\" cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" data-t-ms=\"{:.3}\" data-index=\"{}\" data-chunk=\"{}\"/>",
            kind_class(p.kind),
            x(p.t_ms),
            y(p.index as f64),
            p.t_ms,
            p.index,
            p.chunk
        );
    }
    out.push_str("</svg>\n");
    let mut notes = vec![format!(
        "{} deltas; blue answer, purple reasoning, amber tool arguments; shaded: silences ≥ {STALL_MARK_MS:.0} ms; red bars: chunks with ≥ {BURST_MARK_DELTAS} deltas.",
        points.last().map_or(0, |p| p.index)
    )];
    if decoded.compacted {
        notes.push("Entries were merged to stay within capture.timeline_max_entries: their deltas are spread evenly over each entry's span.".to_string());
    }
    if decoded.per_entry {
        notes.push(format!(
            "More than {MAX_CIRCLES} deltas: one point per entry."
        ));
    }
    let _ = writeln!(out, "<p class=\"note\">{}</p>", escape(&notes.join(" ")));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const SCRIPT: &str = "<script>alert(1)</script>";

    fn smooth_timeline() -> Value {
        // 12 deltas, 150 ms apart from 150 ms on, each in its own chunk.
        let mut t = vec![150_000];
        t.extend(std::iter::repeat_n(150_000, 11));
        json!({
            "unit": "us", "deltas": 12, "compacted": false,
            "t": t, "span": vec![0; 12], "n": vec![1; 12], "bytes": vec![4; 12],
            "chunk": std::iter::once(1).chain(std::iter::repeat_n(1, 11)).collect::<Vec<_>>(),
            "kind": "rrcccccccccc",
        })
    }

    fn wall_timeline() -> Value {
        // 40 deltas in one chunk, 2 s after the request.
        let mut t = vec![2_000_000];
        t.extend(std::iter::repeat_n(3, 39));
        let mut chunk = vec![1];
        chunk.extend(std::iter::repeat_n(0, 39));
        json!({
            "unit": "us", "deltas": 40, "compacted": false,
            "t": t, "span": vec![0; 40], "n": vec![1; 40], "bytes": vec![4; 40],
            "chunk": chunk, "kind": "c".repeat(40),
        })
    }

    fn summary(id: &str, timeline: Value) -> Value {
        json!({
            "id": id, "start_unix_ms": 1_735_689_600_123_i64, "model": "gpt-4o-mini",
            "response_model": "gpt-4o-mini-2024-07-18", "provider": "openai", "api": "chat.completions",
            "method": "POST", "path": "/v1/chat/completions", "status": 200,
            "outcome": "completed", "ttft_ms": 151.2, "duration_ms": 1810.0,
            "input_tokens": 9, "output_tokens": 12, "usage_source": "reported",
            "content": "Hello there", "reasoning": "hmm",
            "stream_health": {"verdict": "smooth", "content_deltas": 12, "largest_burst": 1, "burst_share": 0.0, "longest_stall_ms": 152.0, "stall_phase": "content", "end_marker": true},
            "request_messages": [{"role": "user", "content": "Say hello"}],
            "timeline": timeline,
        })
    }

    fn circles(html: &str) -> Vec<(f64, f64, f64, u64)> {
        html.split("<circle ")
            .skip(1)
            .map(|c| {
                let attr = |name: &str| -> String {
                    let start = c.find(&format!(" {name}=\"")).unwrap() + name.len() + 3;
                    c[start..].split('"').next().unwrap().to_string()
                };
                (
                    attr("cx").parse().unwrap(),
                    attr("cy").parse().unwrap(),
                    attr("data-t-ms").parse().unwrap(),
                    attr("data-index").parse().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn escape_covers_the_five_characters() {
        assert_eq!(
            escape(r#"<a href="x" title='y'>&amp;</a>"#),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(escape("plain — ünïcode"), "plain — ünïcode");
        assert_eq!(percent_encode("a b/<c>é"), "a%20b%2F%3Cc%3E%C3%A9");
    }

    /// A model answer, a model name and an id that are markup render as text,
    /// on both pages; the raw `<script>` never appears (this fails against a
    /// page that does not escape).
    #[test]
    fn markup_in_a_summary_renders_as_text() {
        let mut s = summary(SCRIPT, smooth_timeline());
        s["content"] = json!(format!("before {SCRIPT} after"));
        s["model"] = json!(SCRIPT);
        s["reasoning"] = json!(SCRIPT);
        s["provider"] = json!("\"><img src=x onerror=alert(1)>");
        s["tool_calls"] = json!([{"id": SCRIPT, "name": SCRIPT, "arguments": SCRIPT}]);
        s["request_messages"] = json!([{"role": SCRIPT, "content": SCRIPT}]);
        s["stream_health"]["verdict"] = json!(SCRIPT);
        s["error"] = json!(SCRIPT);
        let health = json!({"status": SCRIPT, "reasons": [SCRIPT], "verdicts": {"smooth": SCRIPT}});
        let pages = [
            ("call", call_page(&s)),
            ("list", list_page(&[&s], &health, None)),
            ("404", not_found_page(SCRIPT)),
            ("400", error_page(SCRIPT)),
        ];
        for (name, html) in pages {
            assert!(!html.contains("<script"), "{name}: raw <script>:\n{html}");
            assert!(!html.contains("<img"), "{name}: raw <img>");
            assert!(
                html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
                "{name}: not shown escaped:\n{html}"
            );
        }
        let call = call_page(&s);
        assert!(call.contains("before &lt;script&gt;alert(1)&lt;/script&gt; after"));
        // The link to the call percent-encodes the id, then escapes it.
        let list = list_page(&[&s], &json!({}), None);
        assert!(
            list.contains("href=\"/calls/%3Cscript%3Ealert%281%29%3C%2Fscript%3E\""),
            "{list}"
        );
    }

    #[test]
    fn request_headers_and_content_are_never_rendered() {
        let mut s = summary("req-1", smooth_timeline());
        s["request_headers"] = json!({
            "authorization": "Bearer sk-live-SECRET123",
            "x-api-key": "[redacted]",
            "x-team": "team-visible-only-in-json",
        });
        s["request_content"] = json!({"api_key": "sk-body-SECRET456", "messages": []});
        for html in [call_page(&s), list_page(&[&s], &json!({}), None)] {
            for secret in [
                "sk-live-SECRET123",
                "Bearer",
                "sk-body-SECRET456",
                "team-visible-only-in-json",
                "authorization",
                "[redacted]",
            ] {
                assert!(!html.contains(secret), "{secret} rendered:\n{html}");
            }
        }
        // The rest of the call is there.
        assert!(call_page(&s).contains("Hello there"));
    }

    #[test]
    fn the_list_is_newest_first_with_its_columns_and_filters() {
        let a = summary("req-a", Value::Null);
        let mut b = summary("req-b", Value::Null);
        b["stream_health"]["verdict"] = json!("buffered");
        b["start_unix_ms"] = json!(1_735_689_601_000_i64);
        let health = json!({
            "status": "degraded", "reasons": ["1 of 2 streams not smooth (buffered 1)"],
            "calls_last_5m": 2, "streamed_calls_last_5m": 2, "ttft_p50_ms": 151.2, "ttft_p95_ms": 151.2,
            "verdicts": {"smooth": 1, "bursty": 0, "buffered": 1, "stalled": 0, "too_short": 0},
            "not_smooth_share": 0.5, "error_calls_last_5m": 0,
        });
        let html = list_page(&[&a, &b], &health, Some(Some("buffered")));
        let (at_a, at_b) = (html.find("req-a").unwrap(), html.find("req-b").unwrap());
        assert!(at_b < at_a, "newest first");
        assert!(html.contains("2025-01-01 00:00:00.123 UTC"), "{html}");
        assert!(html.contains("2025-01-01 00:00:01.000 UTC"));
        assert!(html.contains("<span class=\"status-degraded\">degraded</span>"));
        assert!(html.contains("1 of 2 streams not smooth"));
        assert!(html.contains("151 ms"));
        assert!(html.contains("9 / 12"));
        assert!(html.contains("<a href=\"/?verdict=buffered\" class=\"on\">buffered</a>"));
        assert!(html.contains("<a href=\"/calls/req-a\">req-a</a>"));
        // The rows' class styles nothing (a `.call{display:flex}` once broke the table).
        assert!(!STYLE.contains(".call{") && !STYLE.contains(".call "));
        // Bounded.
        let many: Vec<Value> = (0..MAX_ROWS + 50)
            .map(|i| summary(&format!("r{i}"), Value::Null))
            .collect();
        let refs: Vec<&Value> = many.iter().collect();
        let html = list_page(&refs, &json!({}), None);
        assert_eq!(html.matches("<tr class=\"call\"").count(), MAX_ROWS);
        assert!(html.contains("data-id=\"r249\""), "newest kept");
        assert!(!html.contains("data-id=\"r49\""), "oldest dropped");
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc_time(&json!(0)), "1970-01-01 00:00:00.000 UTC");
        assert_eq!(
            utc_time(&json!(951_782_400_000_i64)),
            "2000-02-29 00:00:00.000 UTC"
        );
        assert_eq!(
            utc_time(&json!(1_709_251_199_999_i64)),
            "2024-02-29 23:59:59.999 UTC"
        );
        assert_eq!(utc_time(&Value::Null), "–");
    }

    #[test]
    fn decodes_delta_encoded_and_merged_entries() {
        let timeline = json!({
            "unit": "us", "deltas": 6, "compacted": true,
            "t": [100_000, 50_000, 1_000_000], "span": [0, 30_000, 0], "n": [1, 4, 1],
            "bytes": [3, 12, 3], "chunk": [2, 1, 3], "kind": "rct",
        });
        let d = decode_timeline(&timeline).unwrap();
        let got: Vec<(f64, u64, char, u64)> = d
            .points
            .iter()
            .map(|p| (p.t_ms, p.index, p.kind, p.chunk))
            .collect();
        assert_eq!(
            got,
            [
                (100.0, 1, 'r', 2),
                (150.0, 2, 'c', 3),
                (160.0, 3, 'c', 3),
                (170.0, 4, 'c', 3),
                (180.0, 5, 'c', 3),
                (1150.0, 6, 't', 6),
            ]
        );
        assert_eq!(d.chunk_deltas, [(2, 1), (3, 4), (6, 1)]);
        assert!(d.compacted && !d.per_entry);
        let html = timeline_svg(&d);
        assert_eq!(html.matches("class=\"delta reasoning\"").count(), 1);
        assert_eq!(html.matches("class=\"delta content\"").count(), 4);
        assert_eq!(html.matches("class=\"delta tool\"").count(), 1);
        assert!(html.contains("merged"));
        // 970 ms from 180 to 1150: under the stall mark.
        assert!(!html.contains("<rect class=\"stall\""));

        let mut bad = timeline.clone();
        bad["n"] = json!([1, 4]);
        assert!(decode_timeline(&bad).unwrap_err().contains("differ"));
        let block = timeline_block(&bad);
        assert!(block.contains("could not be read") && !block.contains("<svg"));
    }

    #[test]
    fn a_smooth_call_spreads_and_a_buffered_one_stands_in_a_wall() {
        let smooth = call_page(&summary("s", smooth_timeline()));
        let c = circles(&smooth);
        assert_eq!(c.len(), 12);
        let xs: Vec<f64> = c.iter().map(|c| c.0).collect();
        let spread = xs.iter().cloned().fold(f64::MIN, f64::max)
            - xs.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread >= 0.6 * PLOT_WIDTH, "{spread}");
        assert_eq!(c[0].2, 150.0);
        assert_eq!(c[11].2, 1800.0);
        assert_eq!(
            c.iter().map(|c| c.3).collect::<Vec<_>>(),
            (1..=12).collect::<Vec<_>>()
        );
        // y rises with the index.
        assert!(c.windows(2).all(|w| w[1].1 < w[0].1));
        assert!(smooth.contains("class=\"delta reasoning\""));
        assert!(!smooth.contains("<rect class=\"stall\""));
        assert!(!smooth.contains("class=\"burst\""));
        assert!(smooth.contains("white-space:pre-wrap"));
        assert!(smooth.contains("<div class=\"text\" id=\"content\">Hello there</div>"));

        let wall = call_page(&summary("w", wall_timeline()));
        let c = circles(&wall);
        assert_eq!(c.len(), 40);
        let xs: Vec<f64> = c.iter().map(|c| c.0).collect();
        let spread = xs.iter().cloned().fold(f64::MIN, f64::max)
            - xs.iter().cloned().fold(f64::MAX, f64::min);
        assert!(spread <= 0.02 * PLOT_WIDTH, "{spread}");
        assert!(wall.contains("data-deltas=\"40\""), "burst marked");
        assert!(wall.contains("burst ×40"));
    }

    #[test]
    fn stalls_are_shaded() {
        // 3 deltas, then 3 s of silence, then 3 more.
        let timeline = json!({
            "unit": "us", "deltas": 6, "compacted": false,
            "t": [100_000, 40_000, 40_000, 3_000_000, 40_000, 40_000],
            "span": [0, 0, 0, 0, 0, 0], "n": [1, 1, 1, 1, 1, 1], "bytes": [4, 4, 4, 4, 4, 4],
            "chunk": [1, 1, 1, 1, 1, 1], "kind": "cccccc",
        });
        let html = timeline_block(&timeline);
        assert_eq!(html.matches("<rect class=\"stall\"").count(), 1, "{html}");
        assert!(html.contains("data-from-ms=\"180.000\" data-ms=\"3000.000\""));
        assert!(html.contains("silence of 3000 ms"));
    }

    #[test]
    fn without_a_timeline_the_page_says_how_to_get_one() {
        let html = call_page(&summary("x", Value::Null));
        assert!(html.contains("<code>capture.timeline</code> is off"));
        assert!(!html.contains("<svg"));
        let mut s = summary("x", Value::Null);
        s.as_object_mut().unwrap().remove("timeline");
        assert!(call_page(&s).contains("capture.timeline"));
    }

    #[test]
    fn many_deltas_are_drawn_one_point_per_entry() {
        let timeline = json!({
            "unit": "us", "deltas": MAX_CIRCLES * 2, "compacted": true,
            "t": [1000, 1_000_000], "span": [500_000, 500_000], "n": [MAX_CIRCLES, MAX_CIRCLES],
            "bytes": [1, 1], "chunk": [0, 50], "kind": "cc",
        });
        let d = decode_timeline(&timeline).unwrap();
        assert!(d.per_entry);
        assert_eq!(d.points.len(), 2);
        assert_eq!(d.points[1].index, MAX_CIRCLES * 2);
    }
}
