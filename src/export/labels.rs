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
use std::borrow::Cow;

/// Longest label value kept (longer ones are cut at a char boundary): an
/// ARN is ~110 bytes; a header value could be anything.
const MAX_VALUE_BYTES: usize = 192;

/// A label's value as it may appear in a stat name. `;` and `=` make the
/// delimiters, so a value (a model id comes from the client) never holds
/// them: it could not forge or break another label's segment. Control
/// characters go too (the shared list is newline-separated).
/// Borrowed when there is nothing to change (the usual case: a call's
/// labels are cleaned ~40 times, so no copy is made for them).
pub fn clean(value: &str) -> Cow<'_, str> {
    if value.is_empty() {
        return Cow::Borrowed("unknown");
    }
    let mut end = value.len().min(MAX_VALUE_BYTES);
    while !value.is_char_boundary(end) {
        end -= 1;
    }
    let value = &value[..end];
    let banned = |c: char| c == ';' || c == '=' || c.is_control();
    if value.contains(banned) {
        Cow::Owned(value.replace(banned, "_"))
    } else {
        Cow::Borrowed(value)
    }
}

/// The stat name of `metric` with these labels.
pub fn labelled_name(metric: &str, labels: &[(&str, &str)]) -> String {
    name_with(metric, labels, &[])
}

/// The stat name of `metric` with `labels`, then `more` labels.
fn name_with(metric: &str, labels: &[(&str, &str)], more: &[(&str, &str)]) -> String {
    const PREFIX: &str = "streamtap.";
    // Sized once: growing the name label by label cost more than its text.
    let size = labels
        .iter()
        .chain(more)
        .map(|(t, v)| t.len() + v.len() + 4);
    let mut name = String::with_capacity(PREFIX.len() + size.sum::<usize>() + metric.len());
    name.push_str(PREFIX);
    for (tag, value) in labels.iter().chain(more) {
        name.push_str(tag);
        name.push_str("=.");
        name.push_str(&clean(value));
        name.push_str(";.");
    }
    name.push_str(metric);
    name
}

/// Where the admitted values of a label are kept for every VM of the
/// process (every worker, and the VMs a config push brings): Envoy's shared
/// data, in the shell.
pub trait SharedValues {
    /// The stored list and its version; None when it cannot be read.
    fn load(&mut self, key: &str) -> Option<(Vec<u8>, u32)>;
    /// Stores the list if its version is still `version`; false when another
    /// VM wrote first (or the store failed).
    fn store(&mut self, key: &str, list: &[u8], version: u32) -> bool;
}

/// Tries to add a value to the shared list before giving up on it.
const STORE_TRIES: usize = 4;

/// The distinct values of one label, at most `max_values` in the process:
/// the first ones any VM saw. This VM keeps a copy of the list, so a known
/// value costs no host call; a new one reads (and maybe extends) the shared
/// list once.
#[derive(Debug, Default)]
pub struct BoundedValues {
    /// The shared data key of the list (newline-separated values).
    key: &'static str,
    /// The list as last read, at most `max_values`.
    seen: Vec<String>,
    max_values: usize,
    /// Values counted under `other` because the bound was full.
    pub overflowed: u64,
}

pub const OTHER: &str = "other";

impl BoundedValues {
    pub fn new(key: &'static str, max_values: usize) -> Self {
        BoundedValues {
            key,
            seen: Vec::new(),
            max_values,
            overflowed: 0,
        }
    }

    pub fn max_values(&self) -> usize {
        self.max_values
    }

    /// The value to label with: itself while the process-wide bound has room
    /// (or it is already in), else `other`. `value` is already cleaned.
    pub fn admit(&mut self, value: String, shared: &mut dyn SharedValues) -> String {
        if self.seen.contains(&value) {
            return value;
        }
        // The list only grows, so a full copy is still the list.
        if self.seen.len() < self.max_values {
            for _ in 0..STORE_TRIES {
                let Some((bytes, version)) = shared.load(self.key) else {
                    break;
                };
                self.seen = String::from_utf8_lossy(&bytes)
                    .split('\n')
                    .filter(|v| !v.is_empty())
                    .take(self.max_values)
                    .map(str::to_string)
                    .collect();
                if self.seen.contains(&value) {
                    return value;
                }
                if self.seen.len() >= self.max_values {
                    break;
                }
                let mut list = bytes;
                if !list.is_empty() {
                    list.push(b'\n');
                }
                list.extend_from_slice(value.as_bytes());
                if shared.store(self.key, &list, version) {
                    self.seen.push(value.clone());
                    return value;
                }
            }
        }
        self.overflowed += 1;
        OTHER.to_string()
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

/// The shared data keys of the bounded labels' lists: model, consumer,
/// route, upstream cluster.
pub const LABEL_LIST_KEYS: [&str; 4] = [
    "streamtap.label.gen_ai_request_model",
    "streamtap.label.consumer",
    "streamtap.label.route",
    "streamtap.label.upstream_cluster",
];

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
            models: BoundedValues::new(LABEL_LIST_KEYS[0], max_values),
            consumers: BoundedValues::new(LABEL_LIST_KEYS[1], max_values),
            routes: BoundedValues::new(LABEL_LIST_KEYS[2], max_values),
            clusters: BoundedValues::new(LABEL_LIST_KEYS[3], max_values),
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
pub fn samples(
    finished: &Finished,
    place: &Place<'_>,
    bounds: &mut LabelBounds,
    shared: &mut dyn SharedValues,
) -> Vec<Sample> {
    let labels = &finished.labels;
    let model = labels.model.as_deref().unwrap_or("unknown");
    let model = bounds.models.admit(clean(model).into_owned(), shared);
    let provider = ("gen_ai_provider_name", labels.provider);
    let model = ("gen_ai_request_model", model.as_str());
    let operation = (
        "gen_ai_operation_name",
        labels.operation.unwrap_or("unknown"),
    );
    let mut admitted: Vec<(&str, String)> = Vec::new();
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
            admitted.push((tag, bound.admit(clean(value).into_owned(), shared)));
        }
    }
    let whose: Vec<(&str, &str)> = admitted.iter().map(|(t, v)| (*t, v.as_str())).collect();
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

    #[test]
    fn a_clean_value_is_not_copied() {
        assert!(matches!(clean("gpt-4.1"), Cow::Borrowed("gpt-4.1")));
        assert!(matches!(clean(""), Cow::Borrowed("unknown")));
        assert!(matches!(clean("a\nb"), Cow::Owned(v) if v == "a_b"));
        let long = "x".repeat(300);
        assert!(matches!(clean(&long), Cow::Borrowed(v) if v.len() == 192));
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
        let got = samples(
            &finished("claude-x"),
            &Place::default(),
            &mut bounds,
            &mut Store::default(),
        );
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
        let mut store = Store::default();
        let place = Place {
            consumer: Some("team-a"),
            route: Some("chat"),
            upstream_cluster: Some("outbound|443||api.anthropic.com"),
        };
        let got = samples(&finished("m1"), &place, &mut bounds, &mut store);
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
        let got = samples(&finished("m2"), &other_team, &mut bounds, &mut store);
        assert!(got[0].name.contains("gen_ai_request_model=.other;."));
        assert!(got[0].name.contains("consumer=.other;.route=.chat;."));
        assert_eq!(bounds.overflowed(), 2);
    }

    /// Envoy's shared data as the host keeps it: a value and a version per
    /// key; `lose` makes the next stores fail as if another VM wrote first.
    #[derive(Default)]
    struct Store {
        data: std::collections::BTreeMap<String, (Vec<u8>, u32)>,
        lose: usize,
        loads: usize,
    }

    impl SharedValues for Store {
        fn load(&mut self, key: &str) -> Option<(Vec<u8>, u32)> {
            self.loads += 1;
            Some(self.data.get(key).cloned().unwrap_or_default())
        }

        fn store(&mut self, key: &str, list: &[u8], version: u32) -> bool {
            let current = self.data.get(key).map_or(0, |d| d.1);
            if self.lose > 0 || current != version {
                self.lose = self.lose.saturating_sub(1);
                // The other VM's write moved the version on.
                self.data.entry(key.to_string()).or_default().1 += 1;
                return false;
            }
            self.data
                .insert(key.to_string(), (list.to_vec(), version + 1));
            true
        }
    }

    fn admit(b: &mut BoundedValues, store: &mut Store, value: &str) -> String {
        b.admit(value.to_string(), store)
    }

    #[test]
    fn past_the_bound_values_are_other() {
        let mut store = Store::default();
        let mut b = BoundedValues::new("k", 2);
        assert_eq!(admit(&mut b, &mut store, "a"), "a");
        assert_eq!(admit(&mut b, &mut store, "b"), "b");
        assert_eq!(admit(&mut b, &mut store, "a"), "a");
        assert_eq!(admit(&mut b, &mut store, "c"), OTHER);
        assert_eq!(admit(&mut b, &mut store, "d"), OTHER);
        assert_eq!(b.overflowed, 2);
        // Known values and a full list cost no host call.
        let loads = store.loads;
        admit(&mut b, &mut store, "a");
        admit(&mut b, &mut store, "e");
        assert_eq!(store.loads, loads);
    }

    #[test]
    fn the_bound_holds_for_every_vm_of_the_process() {
        // Two workers, then the VM a config push brings: one shared list.
        let mut store = Store::default();
        let mut vms: Vec<BoundedValues> = (0..3).map(|_| BoundedValues::new("k", 2)).collect();
        assert_eq!(admit(&mut vms[0], &mut store, "a"), "a");
        assert_eq!(admit(&mut vms[1], &mut store, "b"), "b");
        assert_eq!(admit(&mut vms[1], &mut store, "a"), "a");
        for vm in &mut vms {
            assert_eq!(admit(vm, &mut store, "c"), OTHER);
        }
        assert_eq!(admit(&mut vms[2], &mut store, "b"), "b");
        assert_eq!(store.data["k"].0, b"a\nb");
        // Without the shared list each VM would have kept its own two.
        let total: u64 = vms.iter().map(|v| v.overflowed).sum();
        assert_eq!(total, 3);
    }

    #[test]
    fn a_lost_race_retries_and_an_unreadable_store_counts_other() {
        let mut store = Store {
            lose: 2,
            ..Store::default()
        };
        let mut b = BoundedValues::new("k", 2);
        assert_eq!(admit(&mut b, &mut store, "a"), "a");
        store.lose = STORE_TRIES;
        assert_eq!(admit(&mut b, &mut store, "b"), OTHER);
        struct Broken;
        impl SharedValues for Broken {
            fn load(&mut self, _: &str) -> Option<(Vec<u8>, u32)> {
                None
            }
            fn store(&mut self, _: &str, _: &[u8], _: u32) -> bool {
                unreachable!("never stores what it could not read")
            }
        }
        let mut fresh = BoundedValues::new("k", 2);
        assert_eq!(fresh.admit("z".to_string(), &mut Broken), OTHER);
        assert_eq!(fresh.overflowed, 1);
    }
}
