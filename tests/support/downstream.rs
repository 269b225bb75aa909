//! Chains with a buffering hop around streamtap's Envoy, for the
//! streaming-health tests: a real nginx in front (`gzip on` for event-streams
//! or not), or a second Envoy whose Lua filter buffers the whole response
//! between streamtap's Envoy and the scripted upstream. Built on
//! [`FaultStack`] (scripted upstream, collector, streamtap's Envoy).
//!
//! ```text
//! behind_nginx:       client → nginx → streamtap's Envoy → scripted upstream
//! buffering_upstream: client → streamtap's Envoy → Lua Envoy (body()) → scripted upstream
//! direct:             client → streamtap's Envoy → scripted upstream
//! ```

use serde_json::Value;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use testbed::client::{self, StreamResult};
use testbed::envoy::{Envoy, EnvoyOptions, FilterVariant};
use testbed::nginx::{Nginx, NginxOptions};
use testbed::replay::gunzip;
use testbed::scripted::{Script, Served};

use super::timeline::Timeline;
use super::{dead_address, next_id, tail, FaultStack, FAST_EXPORT};

pub struct DownstreamStack {
    /// In front of streamtap's Envoy, when there is one.
    pub nginx: Option<Nginx>,
    /// The scripted upstream, the collector and streamtap's Envoy.
    pub stack: FaultStack,
    /// The buffering Envoy between streamtap's Envoy and the upstream, when there is one.
    pub buffering: Option<Envoy>,
}

impl DownstreamStack {
    /// client → streamtap's Envoy → scripted upstream.
    pub fn direct() -> DownstreamStack {
        Self::direct_with(FAST_EXPORT)
    }

    /// As [`DownstreamStack::direct`], streamtap configured with `plugin_config`.
    pub fn direct_with(plugin_config: &str) -> DownstreamStack {
        DownstreamStack {
            nginx: None,
            stack: FaultStack::start(plugin_config),
            buffering: None,
        }
    }

    /// client → nginx (`opts`) → streamtap's Envoy → scripted upstream.
    pub fn behind_nginx(opts: NginxOptions) -> DownstreamStack {
        Self::behind_nginx_with(opts, FAST_EXPORT)
    }

    /// As [`DownstreamStack::behind_nginx`], streamtap configured with `plugin_config`.
    pub fn behind_nginx_with(opts: NginxOptions, plugin_config: &str) -> DownstreamStack {
        let stack = FaultStack::start(plugin_config);
        let nginx = Nginx::start(stack.envoy.listener, &opts)
            .unwrap_or_else(|e| panic!("nginx did not start:\n{e}"));
        DownstreamStack {
            nginx: Some(nginx),
            stack,
            buffering: None,
        }
    }

    /// client → streamtap's Envoy → a plain Envoy whose Lua filter calls
    /// `response_handle:body()` (holds the whole response until it ends) →
    /// scripted upstream.
    pub fn buffering_upstream() -> DownstreamStack {
        let mut buffering = None;
        let stack = FaultStack::start_with(FAST_EXPORT, |o| {
            let lua = buffering_envoy(o.upstream);
            let o = EnvoyOptions {
                upstream: lua.listener,
                ..o
            };
            buffering = Some(lua);
            o
        });
        DownstreamStack {
            nginx: None,
            stack,
            buffering,
        }
    }

    /// Where the client connects: nginx, else streamtap's Envoy.
    pub fn entry(&self) -> SocketAddr {
        self.nginx
            .as_ref()
            .map_or(self.stack.envoy.listener, |n| n.addr)
    }

    /// Streams `timeline` (its script, path and request) through the chain.
    pub fn call(&self, timeline: &Timeline, headers: &[(&str, &str)]) -> Run {
        self.call_with(timeline, timeline.script(), headers)
    }

    /// As [`DownstreamStack::call`], with `script` in place of the timeline's
    /// own (e.g. `timeline.script().header("x-accel-buffering", "no")`).
    pub fn call_with(&self, timeline: &Timeline, script: Script, headers: &[(&str, &str)]) -> Run {
        let id = next_id("d");
        self.stack.upstream.script(&id, script);
        let mut h: Vec<(&str, &str)> = vec![("x-script", id.as_str())];
        h.extend_from_slice(headers);
        let got = client::post(self.entry(), timeline.path, &h, &timeline.request)
            .unwrap_or_else(|e| panic!("request {id} failed: {e}\n{}", self.logs()));
        let served = self
            .stack
            .upstream
            .wait_served(&id, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("upstream never finished {id}\n{}", self.logs()));
        Run { id, served, got }
    }

    /// The collector's summary of `run`.
    pub fn summary_for(&self, run: &Run) -> Value {
        self.stack.summary_for(&run.served)
    }

    /// The tails of every process's log, for failure messages.
    pub fn logs(&self) -> String {
        let mut s = String::new();
        if let Some(n) = &self.nginx {
            s.push_str(&format!("--- nginx log ---\n{}\n", tail(&n.log(), 3000)));
        }
        s.push_str(&format!(
            "--- streamtap's Envoy log ---\n{}\n",
            tail(&self.stack.envoy.log(), 3000)
        ));
        if let Some(b) = &self.buffering {
            s.push_str(&format!(
                "--- buffering Envoy log ---\n{}\n",
                tail(&b.log(), 2000)
            ));
        }
        s
    }
}

/// A plain Envoy (no Wasm) with the buffering Lua filter
/// ([`FilterVariant::BufferingLua`]) in front of `upstream`; its collector
/// cluster points at a dead address (nothing uses it).
pub fn buffering_envoy(upstream: SocketAddr) -> Envoy {
    let opts = EnvoyOptions::new(upstream, dead_address()).with_filter(FilterVariant::BufferingLua);
    Envoy::start(&opts).unwrap_or_else(|e| panic!("buffering Envoy did not start:\n{e}"))
}

/// One call through a chain: what the upstream wrote and when, what the client read and when.
pub struct Run {
    pub id: String,
    pub served: Served,
    pub got: StreamResult,
}

impl Run {
    /// Socket reads that brought body bytes to the client.
    pub fn reads(&self) -> usize {
        self.got.frames.len()
    }

    /// When the upstream's first body write completed.
    pub fn first_write(&self) -> Instant {
        self.served
            .writes
            .first()
            .map_or(self.served.started, |w| w.0)
    }

    /// When the upstream's last body write completed.
    pub fn last_write(&self) -> Instant {
        self.served
            .writes
            .last()
            .map_or(self.served.started, |w| w.0)
    }

    pub fn first_read(&self) -> Instant {
        self.got.frames.first().map_or(self.got.started, |f| f.0)
    }

    pub fn last_read(&self) -> Instant {
        self.got.frames.last().map_or(self.got.started, |f| f.0)
    }

    /// From the first read to the last.
    pub fn read_span(&self) -> Duration {
        self.last_read() - self.first_read()
    }

    /// The body the client got, gunzipped when it came `content-encoding: gzip`.
    pub fn decoded_body(&self) -> Vec<u8> {
        match self.got.header("content-encoding") {
            Some(e) if e.eq_ignore_ascii_case("gzip") => gunzip(&self.got.body)
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", self.id, self.describe())),
            _ => self.got.body.clone(),
        }
    }

    /// Writes and reads in ms from the first write, for assertion messages.
    pub fn describe(&self) -> String {
        let t0 = self.first_write();
        let ms = |t: Instant| t.saturating_duration_since(t0).as_millis();
        let writes: Vec<String> = self
            .served
            .writes
            .iter()
            .map(|&(t, end)| format!("{}@{end}", ms(t)))
            .collect();
        let reads: Vec<String> = self
            .got
            .frames
            .iter()
            .map(|&(t, n)| format!("{}+{n}", ms(t)))
            .collect();
        format!(
            "{}: status {}, content-encoding {:?}; {} writes (ms@end offset) [{}]; {} reads (ms+bytes) [{}]",
            self.id,
            self.got.status,
            self.got.header("content-encoding"),
            writes.len(),
            writes.join(" "),
            reads.len(),
            reads.join(" ")
        )
    }
}
