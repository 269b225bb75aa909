//! Labelled Envoy stats: proxy-wasm has no label API, so the label values
//! travel in the stat name and the Envoy config's `stats_config.stats_tags`
//! turns them back into tags (`envoy/streamtap.yaml`).
//!
//! A name is `streamtap.` then one `<tag>=.<value>;.` segment per label, then
//! the metric: `streamtap.gen_ai_provider_name=.openai;.gen_ai_request_model=.gpt-4.1;.calls`.
//! Each tag's regex `(<tag>=\.(.+?);\.)` removes its segment and takes the
//! value; what is left is `streamtap.calls`. Tag extraction never unescapes,
//! so the delimiter is one no value may hold: `;` in a value becomes `_`
//! (model ids hold `.`, `:`, `/` and `@`; they pass as they are).
//!
//! Cardinality is bounded per label: the first `max_values` distinct values
//! are kept, later ones are counted under `other` (and the overflow counted).
//!
//! [`samples`] is the policy: which series a finished call adds to, with
//! which values. The shell only defines the stats and adds the values.

use crate::call::health::Verdict;
use crate::call::tap::Finished;

/// Longest label value kept (longer ones are cut at a char boundary): an
/// ARN is ~110 bytes; a header value could be anything.
const MAX_VALUE_BYTES: usize = 192;

/// A label's value as it may appear in a stat name. `;` and `=` make the
/// delimiters, so a value (a model id comes from the client) never holds
/// them: it could not forge or break another label's segment.
fn clean(value: &str) -> String {
    if value.is_empty() {
        return "unknown".to_string();
    }
    let mut end = value.len().min(MAX_VALUE_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    value[..end].replace([';', '='], "_")
}

/// The stat name of `metric` with these labels.
pub fn labelled_name(metric: &str, labels: &[(&str, &str)]) -> String {
    name_with(metric, labels, &[])
}

/// The stat name of `metric` with `labels`, then `more` labels.
fn name_with(metric: &str, labels: &[(&str, &str)], more: &[(&str, &str)]) -> String {
    let mut name = String::from("streamtap.");
    for (tag, value) in labels.iter().chain(more) {
        name.push_str(tag);
        name.push_str("=.");
        name.push_str(&clean(value));
        name.push_str(";.");
    }
    name.push_str(metric);
    name
}

/// The distinct values seen for one label, at most `max_values`.
#[derive(Debug, Default)]
pub struct BoundedValues {
    seen: Vec<String>,
    max_values: usize,
    /// Values counted under `other` because the bound was full.
    pub overflowed: u64,
}

pub const OTHER: &str = "other";

impl BoundedValues {
    pub fn new(max_values: usize) -> Self {
        BoundedValues {
            seen: Vec::new(),
            max_values,
            overflowed: 0,
        }
    }

    pub fn max_values(&self) -> usize {
        self.max_values
    }

    /// The value to label with: itself while the bound has room, else `other`.
    pub fn admit<'a>(&mut self, value: &'a str) -> &'a str {
        if self.seen.iter().any(|v| v == value) {
            return value;
        }
        if self.seen.len() < self.max_values {
            self.seen.push(value.to_string());
            return value;
        }
        self.overflowed += 1;
        OTHER
    }
}

/// What a call's labels are besides its own facts: who called and where it
/// went, when the config asks for them (`metric_labels`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Place<'a> {
    pub consumer: Option<&'a str>,
    pub route: Option<&'a str>,
    pub upstream_cluster: Option<&'a str>,
}

/// The bounded labels of one VM.
#[derive(Debug, Default)]
pub struct LabelBounds {
    models: BoundedValues,
    consumers: BoundedValues,
    routes: BoundedValues,
    clusters: BoundedValues,
}

impl LabelBounds {
    pub fn new(max_values: usize) -> Self {
        LabelBounds {
            models: BoundedValues::new(max_values),
            consumers: BoundedValues::new(max_values),
            routes: BoundedValues::new(max_values),
            clusters: BoundedValues::new(max_values),
        }
    }

    pub fn max_values(&self) -> usize {
        self.models.max_values()
    }

    /// Values counted under `other` so far, all labels together.
    pub fn overflowed(&self) -> u64 {
        self.models.overflowed
            + self.consumers.overflowed
            + self.routes.overflowed
            + self.clusters.overflowed
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleKind {
    Counter,
    Histogram,
}

/// One value for one labelled stat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub kind: SampleKind,
    pub name: String,
    pub value: u64,
}

/// The labelled stats a finished call adds to: calls, tokens and cost
/// counters (labelled by the place too), and the GenAI histograms by
/// provider, operation and model (the place would multiply their series).
pub fn samples(finished: &Finished, place: &Place<'_>, bounds: &mut LabelBounds) -> Vec<Sample> {
    let labels = &finished.labels;
    let model = bounds
        .models
        .admit(labels.model.as_deref().unwrap_or("unknown"));
    let provider = ("gen_ai_provider_name", labels.provider);
    let model = ("gen_ai_request_model", model);
    let operation = (
        "gen_ai_operation_name",
        labels.operation.unwrap_or("unknown"),
    );
    let mut whose: Vec<(&str, &str)> = Vec::new();
    for (tag, value, bound) in [
        ("consumer", place.consumer, &mut bounds.consumers),
        ("route", place.route, &mut bounds.routes),
        (
            "upstream_cluster",
            place.upstream_cluster,
            &mut bounds.clusters,
        ),
    ] {
        if let Some(value) = value {
            whose.push((tag, bound.admit(value)));
        }
    }
    let mut out = Vec::with_capacity(12);
    let mut counter = |name: String, value: u64| {
        out.push(Sample {
            kind: SampleKind::Counter,
            name,
            value,
        })
    };
    let verdict = finished.verdict.map_or("none", Verdict::name);
    counter(
        name_with(
            "gen_ai_calls",
            &[
                provider,
                operation,
                model,
                ("outcome", labels.outcome),
                ("stream_health_verdict", verdict),
            ],
            &whose,
        ),
        1,
    );
    for (kind, tokens) in [
        ("input", labels.input_tokens),
        ("output", labels.output_tokens),
        ("cache_read_input", labels.cache_read_input_tokens),
        ("cache_write_input", labels.cache_write_input_tokens),
        ("reasoning_output", labels.reasoning_output_tokens),
    ] {
        if let Some(n) = tokens.filter(|&n| n > 0) {
            counter(
                name_with(
                    "gen_ai_tokens",
                    &[
                        provider,
                        model,
                        ("gen_ai_token_type", kind),
                        ("usage_source", labels.usage_source),
                    ],
                    &whose,
                ),
                n,
            );
        }
    }
    if let Some(micro) = labels.cost_micro_usd {
        counter(
            name_with("gen_ai_cost_micro_usd", &[provider, model], &whose),
            micro,
        );
    }
    let mut histogram = |metric: &str, labels: &[(&str, &str)], value: u64| {
        out.push(Sample {
            kind: SampleKind::Histogram,
            name: labelled_name(metric, labels),
            value,
        })
    };
    // The units are in the names: Envoy histograms hold integers.
    for (metric, value) in [
        ("gen_ai_client_operation_duration_ms", labels.duration_ms),
        (
            "gen_ai_client_operation_time_to_first_chunk_ms",
            labels.ttfb_ms,
        ),
        ("gen_ai_server_time_to_first_token_ms", finished.ttft_ms),
        (
            "gen_ai_server_time_per_output_token_us",
            labels.time_per_output_token_us,
        ),
    ] {
        if let Some(value) = value {
            histogram(metric, &[provider, operation, model], value);
        }
    }
    for (kind, tokens) in [
        ("input", labels.input_tokens),
        ("output", labels.output_tokens),
    ] {
        if let Some(n) = tokens {
            histogram(
                "gen_ai_client_token_usage",
                &[provider, operation, model, ("gen_ai_token_type", kind)],
                n,
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_each_value_as_it_is() {
        for model in [
            "gpt-4.1",
            "llama3.1:8b",
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "claude-3-5-sonnet-v2@20241022",
        ] {
            let name = labelled_name("calls", &[("gen_ai_request_model", model)]);
            assert_eq!(name, format!("streamtap.gen_ai_request_model=.{model};.calls"));
        }
        assert_eq!(
            labelled_name("calls", &[("a", "x;.y"), ("b", "")]),
            "streamtap.a=.x_.y;.b=.unknown;.calls"
        );
        // A client-chosen model cannot forge another label's segment.
        assert_eq!(
            labelled_name("calls", &[("gen_ai_request_model", "m;.outcome=.ok")]),
            "streamtap.gen_ai_request_model=.m_.outcome_.ok;.calls"
        );
        let long = "é".repeat(200);
        let name = labelled_name("calls", &[("consumer", &long)]);
        assert_eq!(name.len(), "streamtap.consumer=.;.calls".len() + 192);
    }

    fn finished(model: &str) -> Finished {
        use crate::call::record::Outcome;
        use crate::call::tap::CallLabels;
        Finished {
            summary_json: String::new(),
            outcome: Outcome::Completed,
            ttft_ms: Some(120),
            events: 5,
            parse_errors: 0,
            decode_capped: false,
            verdict: Some(Verdict::Smooth),
            labels: CallLabels {
                provider: "anthropic",
                operation: Some("chat"),
                model: Some(model.to_string()),
                outcome: "completed",
                usage_source: "reported",
                input_tokens: Some(10),
                output_tokens: Some(4),
                cache_read_input_tokens: Some(0),
                cache_write_input_tokens: Some(3),
                reasoning_output_tokens: None,
                cost_micro_usd: Some(42),
                duration_ms: Some(400),
                ttfb_ms: Some(100),
                time_per_output_token_us: Some(93_333),
            },
        }
    }

    #[test]
    fn a_call_adds_to_its_counters_and_histograms_once_each() {
        let mut bounds = LabelBounds::new(10);
        let got = samples(&finished("claude-x"), &Place::default(), &mut bounds);
        let names: Vec<(&str, u64)> = got.iter().map(|s| (s.name.as_str(), s.value)).collect();
        let p = "gen_ai_provider_name=.anthropic;.";
        let m = "gen_ai_request_model=.claude-x;.";
        let o = "gen_ai_operation_name=.chat;.";
        assert_eq!(
            names[0],
            (
                format!("streamtap.{p}{o}{m}outcome=.completed;.stream_health_verdict=.smooth;.gen_ai_calls").as_str(),
                1
            )
        );
        // Zero cache reads add nothing; the cache writes do.
        let tokens: Vec<_> = names
            .iter()
            .filter(|(n, _)| n.ends_with("gen_ai_tokens"))
            .collect();
        assert_eq!(tokens.len(), 3, "{names:?}");
        assert!(tokens
            .iter()
            .any(|(n, v)| n.contains("cache_write_input;.") && *v == 3));
        assert!(names.contains(&(
            format!("streamtap.{p}{m}gen_ai_cost_micro_usd").as_str(),
            42
        )));
        let histograms: Vec<_> = got
            .iter()
            .filter(|s| s.kind == SampleKind::Histogram)
            .collect();
        assert_eq!(histograms.len(), 6, "{names:?}");
        assert!(histograms.iter().any(|s| s.name
            == format!("streamtap.{p}{o}{m}gen_ai_server_time_per_output_token_us")
            && s.value == 93_333));
    }

    #[test]
    fn the_place_labels_the_counters_only_and_is_bounded() {
        let mut bounds = LabelBounds::new(1);
        let place = Place {
            consumer: Some("team-a"),
            route: Some("chat"),
            upstream_cluster: Some("outbound|443||api.anthropic.com"),
        };
        let got = samples(&finished("m1"), &place, &mut bounds);
        let whose =
            "consumer=.team-a;.route=.chat;.upstream_cluster=.outbound|443||api.anthropic.com;.";
        for s in &got {
            assert_eq!(
                s.kind == SampleKind::Counter,
                s.name.contains(whose),
                "{}",
                s.name
            );
        }
        let other_team = Place {
            consumer: Some("team-b"),
            ..place
        };
        let got = samples(&finished("m2"), &other_team, &mut bounds);
        assert!(got[0].name.contains("gen_ai_request_model=.other;."));
        assert!(got[0].name.contains("consumer=.other;.route=.chat;."));
        assert_eq!(bounds.overflowed(), 2);
    }

    #[test]
    fn past_the_bound_values_are_other() {
        let mut b = BoundedValues::new(2);
        assert_eq!(b.admit("a"), "a");
        assert_eq!(b.admit("b"), "b");
        assert_eq!(b.admit("a"), "a");
        assert_eq!(b.admit("c"), OTHER);
        assert_eq!(b.admit("d"), OTHER);
        assert_eq!(b.overflowed, 2);
    }
}
