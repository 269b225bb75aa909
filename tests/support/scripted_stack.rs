//! The scripted-upstream stack of the fault, hostile-input, volume and
//! security tests: a scripted upstream (testbed::scripted), a collector and a
//! real Envoy with `dist/streamtap.wasm`, all on 127.0.0.1.

use serde_json::Value;
use std::time::Duration;
use testbed::client::{self, StreamResult};
use testbed::collector::Collector;
use testbed::envoy::{template_path, Envoy, EnvoyOptions};
use testbed::scripted::{Script, ScriptedUpstream, Served};

use super::{next_id, summary_with_id, tail};

pub struct FaultStack {
    pub upstream: ScriptedUpstream,
    pub collector: Collector,
    pub envoy: Envoy,
}

impl FaultStack {
    pub fn start(plugin_config: &str) -> FaultStack {
        Self::start_with(plugin_config, |o| o)
    }

    pub fn start_with(
        plugin_config: &str,
        opts: impl FnOnce(EnvoyOptions) -> EnvoyOptions,
    ) -> FaultStack {
        let template = std::fs::read_to_string(template_path()).expect("envoy/streamtap.yaml");
        Self::start_with_template(plugin_config, &template, opts)
    }

    /// As [`FaultStack::start_with`], Envoy rendered from `template` instead of
    /// `envoy/streamtap.yaml` (same markers and placeholders).
    pub fn start_with_template(
        plugin_config: &str,
        template: &str,
        opts: impl FnOnce(EnvoyOptions) -> EnvoyOptions,
    ) -> FaultStack {
        let upstream = ScriptedUpstream::start().expect("scripted upstream");
        let collector = Collector::start().expect("collector");
        let o = opts(
            EnvoyOptions::new(upstream.addr, collector.addr).with_plugin_config(plugin_config),
        );
        let envoy = Envoy::start_with_template(&o, template)
            .unwrap_or_else(|e| panic!("envoy did not start:\n{e}"));
        FaultStack {
            upstream,
            collector,
            envoy,
        }
    }

    /// Registers `script` under a fresh id and POSTs `body` to `path` through
    /// Envoy, reading the whole response (or what arrives before a reset:
    /// `complete` tells). Returns the id, what the upstream served, and what the
    /// client got.
    pub fn call(
        &self,
        path: &str,
        script: Script,
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> (String, Served, StreamResult) {
        self.call_until(path, script, headers, body, usize::MAX)
    }

    /// As [`FaultStack::call`], the client going away after `stop_after` body bytes.
    pub fn call_until(
        &self,
        path: &str,
        script: Script,
        headers: &[(&str, &str)],
        body: &[u8],
        stop_after: usize,
    ) -> (String, Served, StreamResult) {
        let id = next_id("s");
        self.upstream.script(&id, script);
        let mut h: Vec<(&str, &str)> = vec![("x-script", id.as_str())];
        h.extend_from_slice(headers);
        let got = client::post_until(self.envoy.listener, path, &h, body, stop_after)
            .unwrap_or_else(|e| panic!("request {id} through envoy failed: {e}"));
        let served = self
            .upstream
            .wait_served(&id, Duration::from_secs(30))
            .unwrap_or_else(|| panic!("upstream never finished {id}\n{}", self.envoy.log()));
        (id, served, got)
    }

    /// The collector's summary of the call the upstream served as `served`.
    pub fn summary_for(&self, served: &Served) -> Value {
        let rid = served.header("x-request-id").expect("x-request-id");
        summary_with_id(&self.collector, &self.envoy, rid)
    }

    /// How many collector summaries carry this call's request id.
    pub fn summaries_of(&self, served: &Served) -> usize {
        let rid = served.header("x-request-id").expect("x-request-id");
        self.collector
            .calls()
            .iter()
            .filter(|s| s["id"] == rid)
            .count()
    }

    /// Exactly `n` calls summarized: `wasmcustom.streamtap.calls` and the
    /// collector agree, and no extra summary shows up a little later.
    pub fn assert_exactly(&self, n: usize) {
        let calls = self.envoy.wait_for_stat(
            "wasmcustom.streamtap.calls",
            n as u64,
            Duration::from_secs(10),
        );
        let got = self.collector.wait_for_calls(n, Duration::from_secs(10));
        // Give a duplicate the time of a few flushes to show up.
        std::thread::sleep(Duration::from_millis(400));
        assert_eq!(calls, n as u64, "wasmcustom.streamtap.calls");
        assert_eq!(
            self.envoy.stat("wasmcustom.streamtap.calls"),
            n as u64,
            "wasmcustom.streamtap.calls grew later"
        );
        let now = self.collector.calls();
        assert_eq!(got.len(), n, "collector summaries: {got:?}");
        assert_eq!(now.len(), n, "collector got more later: {now:?}");
        let mut ids: Vec<&str> = now.iter().filter_map(|s| s["id"].as_str()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), n, "one summary per request id");
        // The collector drops a re-sent summary: none may have been re-sent.
        assert_eq!(self.collector.duplicates(), 0, "summaries sent twice");
    }

    /// Envoy's log shows no panic and no trap of the Wasm VM.
    pub fn assert_vm_healthy(&self) {
        let log = self.envoy.log();
        for needle in [
            "panic",
            "wasm trap",
            "Wasm VM failed",
            "unreachable",
            "Function: proxy_",
        ] {
            assert!(
                !log.contains(needle),
                "envoy log contains {needle:?}:\n{}",
                tail(&log, 6000)
            );
        }
    }

    /// Envoy's resident memory, bytes.
    pub fn rss(&self) -> u64 {
        testbed::procfs::process_rss(self.envoy.pid().expect("envoy pid")).expect("VmRSS")
    }
}
