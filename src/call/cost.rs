//! What a call cost: the `pricing` table of the config applied to its usage.
//!
//! Providers count cached input differently: OpenAI's input count (Chat
//! Completions' `prompt_tokens`, the Responses API's `input_tokens`) includes
//! the cached part, Anthropic's `input_tokens` does not (cache reads and
//! writes are counted beside it). Each wire format says which
//! (`WireFormat::INPUT_INCLUDES_CACHED`); the input is normalized to its
//! uncached part before pricing, so no token is paid twice.
//!
//! Out of scope: long-context price tiers, per-duration cache-write prices,
//! batch discounts.

use crate::call::record::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    /// None: cache reads are priced as input.
    pub cache_read: Option<f64>,
    /// None: cache writes are priced as input.
    pub cache_write: Option<f64>,
    /// None: reasoning tokens are priced as output.
    pub reasoning_output: Option<f64>,
}

/// The `pricing` table: model names, exact or a prefix ending in `*`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Pricing {
    /// (name without the `*`, is a prefix, price).
    entries: Vec<(String, bool, Price)>,
}

impl Pricing {
    pub fn insert(&mut self, pattern: &str, price: Price) {
        match pattern.strip_suffix('*') {
            Some(prefix) => self.entries.push((prefix.to_string(), true, price)),
            None => self.entries.push((pattern.to_string(), false, price)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The price of the first model (in `models` order) with an exact
    /// entry; else the longest prefix that matches any of them.
    pub fn price_of(&self, models: &[Option<&str>]) -> Option<Price> {
        let models = || models.iter().flatten();
        for model in models() {
            if let Some((_, _, price)) = self
                .entries
                .iter()
                .find(|(name, prefix, _)| !prefix && name == model)
            {
                return Some(*price);
            }
        }
        self.entries
            .iter()
            .filter(|(name, prefix, _)| *prefix && models().any(|m| m.starts_with(name.as_str())))
            .max_by_key(|(name, _, _)| name.len())
            .map(|(_, _, price)| *price)
    }
}

/// The cost of `usage` at `price`, in micro-dollars (rounded once, per
/// call); None without input and output counts.
pub fn cost_micro_usd(price: &Price, usage: &Usage, input_includes_cached: bool) -> Option<u64> {
    let input = usage.input_tokens?;
    let output = usage.output_tokens?;
    let cache_read = usage.cache_read_input_tokens.unwrap_or(0);
    let cache_write = usage.cache_write_input_tokens.unwrap_or(0);
    let uncached_input = if input_includes_cached {
        input.saturating_sub(cache_read)
    } else {
        input
    };
    // Reasoning tokens are part of the output count; priced apart only when
    // the table says so.
    let (plain_output, reasoning) = match price.reasoning_output {
        Some(_) => {
            let reasoning = usage.reasoning_output_tokens.unwrap_or(0).min(output);
            (output - reasoning, reasoning)
        }
        None => (output, 0),
    };
    let tokens_times_price = uncached_input as f64 * price.input
        + cache_read as f64 * price.cache_read.unwrap_or(price.input)
        + cache_write as f64 * price.cache_write.unwrap_or(price.input)
        + plain_output as f64 * price.output
        + reasoning as f64 * price.reasoning_output.unwrap_or(price.output);
    // Tokens × USD per million tokens = micro-dollars.
    Some(tokens_times_price.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(input: u64, output: u64, read: u64, write: u64, reasoning: u64) -> Usage {
        Usage {
            input_tokens: Some(input),
            output_tokens: Some(output),
            cache_read_input_tokens: Some(read),
            cache_write_input_tokens: Some(write),
            reasoning_output_tokens: Some(reasoning),
        }
    }

    const GPT: Price = Price {
        input: 2.5,
        output: 10.0,
        cache_read: Some(1.25),
        cache_write: None,
        reasoning_output: None,
    };
    const CLAUDE: Price = Price {
        input: 3.0,
        output: 15.0,
        cache_read: Some(0.3),
        cache_write: Some(3.75),
        reasoning_output: None,
    };

    #[test]
    fn openai_input_includes_its_cached_part() {
        // 1000 prompt tokens of which 800 cached, 200 out:
        // 200 × 2.5 + 800 × 1.25 + 200 × 10 = 500 + 1000 + 2000 µ$.
        let u = usage(1000, 200, 800, 0, 0);
        assert_eq!(cost_micro_usd(&GPT, &u, true), Some(3500));
        // Read as if it did not, the cached part would be paid twice.
        assert_eq!(cost_micro_usd(&GPT, &u, false), Some(5500));
    }

    #[test]
    fn anthropic_counts_cache_reads_and_writes_beside_the_input() {
        // 100 uncached in, 5000 read, 2000 written, 300 out:
        // 100 × 3 + 5000 × 0.3 + 2000 × 3.75 + 300 × 15 = 300 + 1500 + 7500 + 4500 µ$.
        let u = usage(100, 300, 5000, 2000, 0);
        assert_eq!(cost_micro_usd(&CLAUDE, &u, false), Some(13_800));
    }

    #[test]
    fn reasoning_is_priced_apart_only_when_the_table_says_so() {
        let u = usage(10, 1000, 0, 0, 600);
        assert_eq!(cost_micro_usd(&GPT, &u, true), Some(25 + 10_000));
        let apart = Price {
            reasoning_output: Some(20.0),
            ..GPT
        };
        assert_eq!(cost_micro_usd(&apart, &u, true), Some(25 + 4_000 + 12_000));
        // Missing cache prices fall back to the input price.
        let plain = Price {
            cache_read: None,
            ..GPT
        };
        assert_eq!(
            cost_micro_usd(&plain, &usage(1000, 0, 1000, 0, 0), true),
            Some(2500)
        );
        assert_eq!(cost_micro_usd(&GPT, &Usage::default(), true), None);
    }

    #[test]
    fn exact_names_win_then_the_longest_prefix() {
        let mut p = Pricing::default();
        p.insert("gpt-4o*", GPT);
        p.insert("gpt-4o-mini*", CLAUDE);
        p.insert("gpt-4o-mini", GPT);
        assert_eq!(p.price_of(&[Some("gpt-4o-mini"), None]), Some(GPT));
        assert_eq!(
            p.price_of(&[None, Some("gpt-4o-mini-2024-07-18")]),
            Some(CLAUDE)
        );
        assert_eq!(p.price_of(&[Some("gpt-4o-2024-08-06"), None]), Some(GPT));
        assert_eq!(p.price_of(&[Some("llama3.1:8b"), None]), None);
        assert_eq!(p.price_of(&[None, None]), None);
    }
}
