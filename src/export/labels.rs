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

/// A label's value as it may appear in a stat name.
fn clean(value: &str) -> String {
    if value.is_empty() {
        return "unknown".to_string();
    }
    value.replace(';', "_")
}

/// The stat name of `metric` with these labels.
pub fn labelled_name(metric: &str, labels: &[(&str, &str)]) -> String {
    let mut name = String::from("streamtap.");
    for (tag, value) in labels {
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
