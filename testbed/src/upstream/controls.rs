//! The `x-mock-*` request headers that steer one answer.

use std::time::Duration;

use crate::http1::Request;

pub(super) const DEFAULT_TOKENS: usize = 10;
pub(super) const DEFAULT_INTERVAL_MS: u64 = 20;
pub(super) const MAX_TOKENS: usize = 1_000_000;

/// Per-request behaviour, from the `x-mock-*` headers.
pub(super) struct Controls {
    pub(super) tokens: usize,
    pub(super) interval: Duration,
    pub(super) chunking: Chunking,
    pub(super) line_ending: &'static str,
    pub(super) status: Option<u16>,
    pub(super) abort_after_events: Option<usize>,
    pub(super) idle_after_events: Option<usize>,
    pub(super) stamp: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum Chunking {
    Event,
    Batch(usize),
    Split,
}

impl Controls {
    pub(super) fn from_request(request: &Request) -> Result<Controls, String> {
        fn number<T: std::str::FromStr>(
            request: &Request,
            name: &str,
        ) -> Result<Option<T>, String> {
            match request.header(name) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| format!("{name}: {v:?} is not a valid number")),
            }
        }
        let tokens = number::<usize>(request, "x-mock-tokens")?.unwrap_or(DEFAULT_TOKENS);
        if tokens > MAX_TOKENS {
            return Err(format!("x-mock-tokens: at most {MAX_TOKENS}"));
        }
        let interval = Duration::from_millis(
            number::<u64>(request, "x-mock-interval-ms")?.unwrap_or(DEFAULT_INTERVAL_MS),
        );
        let chunking = match request.header("x-mock-chunking") {
            None | Some("event") => Chunking::Event,
            Some("split") => Chunking::Split,
            Some(other) => match other.strip_prefix("batch:").map(str::parse::<usize>) {
                Some(Ok(k)) if k >= 1 => Chunking::Batch(k),
                _ => {
                    return Err(format!(
                        "x-mock-chunking: {other:?} is not event, split or batch:K (K >= 1)"
                    ))
                }
            },
        };
        let line_ending = match request.header("x-mock-line-ending") {
            None | Some("lf") => "\n",
            Some("crlf") => "\r\n",
            Some("cr") => "\r",
            Some(other) => {
                return Err(format!(
                    "x-mock-line-ending: {other:?} is not lf, crlf or cr"
                ))
            }
        };
        let status = number::<u16>(request, "x-mock-status")?;
        if let Some(s) = status {
            // Statuses without a body (1xx, 204, 304) cannot carry the error JSON.
            if !(200..=599).contains(&s) || s == 204 || s == 304 {
                return Err(format!("x-mock-status: {s} cannot carry a JSON body"));
            }
        }
        let abort_after_events = number::<usize>(request, "x-mock-abort-after")?;
        let idle_after_events = number::<usize>(request, "x-mock-idle-after")?;
        let stamp = match request.header("x-mock-stamp") {
            None | Some("0") => false,
            Some("1") => true,
            Some(other) => return Err(format!("x-mock-stamp: {other:?} is not 0 or 1")),
        };
        Ok(Controls {
            tokens,
            interval,
            chunking,
            line_ending,
            status,
            abort_after_events,
            idle_after_events,
            stamp,
        })
    }
}
