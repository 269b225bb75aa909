//! Envoy's own guard when the plugin cannot load: what Envoy 1.40 does with a
//! missing or corrupt `.wasm`, given locally or fetched remotely, with the
//! shipped config's `failure_policy: FAIL_OPEN`.
//!
//! Found on Envoy 1.40 (see each test):
//! - local code (`vm_config.code.local`) that is missing or not a loadable
//!   proxy-wasm module: the filter config is rejected and Envoy refuses to
//!   start — `failure_policy` does not apply to loading, only to a VM that
//!   fails later;
//! - remote code (`vm_config.code.remote`) that cannot be fetched, fails its
//!   sha256 or does not load: Envoy starts, and with FAIL_OPEN traffic flows
//!   through without the filter.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;
use support::{chat_request, chat_stream, FAST_EXPORT};
use testbed::client;
use testbed::collector::Collector;
use testbed::envoy::{default_wasm_path, template_path, Envoy, EnvoyOptions};
use testbed::scripted::{Script, ScriptedUpstream};

const LOCAL_CODE: &str = "local:\n                      filename: \"${WASM_PATH}\"";

fn template() -> String {
    let t = std::fs::read_to_string(template_path()).unwrap();
    assert!(t.contains(LOCAL_CODE), "template's code block changed");
    assert!(
        t.contains("failure_policy: FAIL_OPEN"),
        "the shipped config fails open"
    );
    t
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("streamtap-failopen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn sha256_hex(path: &Path) -> String {
    let out = std::process::Command::new("sha256sum")
        .arg(path)
        .output()
        .expect("sha256sum");
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// The template with the plugin code fetched from `uri` (cluster `wasm_code`
/// pointing at `server`), checked against `sha256`.
fn remote_template(server: std::net::SocketAddr, sha256: &str) -> String {
    let remote = format!(
        "remote:\n                      http_uri:\n                        uri: \"http://{server}/streamtap.wasm\"\n                        cluster: wasm_code\n                        timeout: 2s\n                      sha256: \"{sha256}\"\n                      retry_policy:\n                        num_retries: 0"
    );
    let mut t = template().replace(LOCAL_CODE, &remote);
    if !t.ends_with('\n') {
        t.push('\n');
    }
    t.push_str(&format!(
        "  - name: wasm_code\n    type: STATIC\n    connect_timeout: 1s\n    load_assignment:\n      cluster_name: wasm_code\n      endpoints:\n      - lb_endpoints:\n        - endpoint:\n            address:\n              socket_address: {{ address: {}, port_value: {} }}\n",
        server.ip(),
        server.port()
    ));
    t
}

/// What happened: Err(log excerpt) if Envoy did not start; else whether a
/// call flowed and whether streamtap summarized it.
#[derive(Debug)]
enum Seen {
    Refused(String),
    Started {
        status: u16,
        body_ok: bool,
        summarized: bool,
        log: String,
    },
}

fn try_stack(template: &str, plugin_wasm: &Path) -> Seen {
    let upstream = ScriptedUpstream::start().unwrap();
    let collector = Collector::start().unwrap();
    let opts = EnvoyOptions::new(upstream.addr, collector.addr)
        .with_plugin_config(FAST_EXPORT)
        .with_wasm_path(plugin_wasm);
    let envoy = match Envoy::start_with_template(&opts, template) {
        Ok(e) => e,
        Err(log) => return Seen::Refused(log),
    };
    let body = chat_stream(&["flows"]);
    upstream.script("c", Script::sse(body.clone()));
    let got = client::post(
        envoy.listener,
        "/v1/chat/completions",
        &[("x-script", "c")],
        &chat_request(true),
    );
    let (status, body_ok) = match got {
        Ok(g) => (g.status, g.body == body.as_bytes()),
        Err(_) => (0, false),
    };
    let summarized = !collector
        .wait_for_calls(1, Duration::from_secs(2))
        .is_empty();
    Seen::Started {
        status,
        body_ok,
        summarized,
        log: envoy.log(),
    }
}

/// Local code that cannot load: Envoy 1.40 refuses the config at startup
/// whatever the failure policy; the log says why.
#[test]
fn local_code_that_cannot_load_stops_envoy_at_startup() {
    let real = std::fs::read(default_wasm_path()).expect("make build");
    let missing = std::env::temp_dir().join("streamtap-no-such-file.wasm");
    let cases: Vec<(&str, PathBuf)> = vec![
        ("missing", missing.clone()),
        (
            "random bytes",
            temp_file("random.wasm", &pseudo_random(5000)),
        ),
        ("truncated", temp_file("truncated.wasm", &real[..1000])),
        ("empty module", temp_file("empty.wasm", b"\0asm\x01\0\0\0")),
        ("empty file", temp_file("zero.wasm", b"")),
    ];
    for (name, path) in cases {
        // The harness checks that its wasm path exists; point the config itself at the bad file.
        let t = template().replace("${WASM_PATH}", &path.display().to_string());
        let seen = try_stack(&t, &default_wasm_path());
        eprintln!("local {name}: {}", describe(&seen));
        match seen {
            Seen::Refused(log) => assert!(
                log.contains("wasm") || log.contains("Wasm"),
                "{name}: refused, but the log does not say it was the plugin:\n{log}"
            ),
            Seen::Started { .. } => panic!("local {name}: Envoy started: {seen:?}"),
        }
    }
}

/// Remote code that cannot be fetched or loaded: Envoy starts and, failing
/// open, lets traffic through without the filter. The control (the real
/// `.wasm`, right sha256) shows the same config does run streamtap.
#[test]
fn remote_code_that_cannot_load_fails_open_and_traffic_flows() {
    let real = default_wasm_path();
    let corrupt = temp_file("remote-random.wasm", &pseudo_random(5000));
    let code = ScriptedUpstream::start().unwrap();
    let serve = |path: &Path, status: u16| {
        let bytes = std::fs::read(path).unwrap();
        let mut s = Script::json(status, bytes);
        s.content_type = "application/wasm".into();
        code.script("", s); // Envoy's fetch carries no x-script header
    };

    // Control: the real plugin, fetched, runs.
    serve(&real, 200);
    let seen = try_stack(&remote_template(code.addr, &sha256_hex(&real)), &real);
    eprintln!("remote ok (control): {}", describe(&seen));
    assert!(
        matches!(
            seen,
            Seen::Started {
                status: 200,
                body_ok: true,
                summarized: true,
                ..
            }
        ),
        "{seen:?}"
    );

    let cases: Vec<(&str, PathBuf, u16, String)> = vec![
        ("404", real.clone(), 404, sha256_hex(&real)),
        ("sha256 mismatch", real.clone(), 200, "0".repeat(64)),
        (
            "corrupt bytes, matching sha256",
            corrupt.clone(),
            200,
            sha256_hex(&corrupt),
        ),
    ];
    for (name, path, status, sha) in cases {
        serve(&path, status);
        let seen = try_stack(&remote_template(code.addr, &sha), &real);
        eprintln!("remote {name}: {}", describe(&seen));
        match &seen {
            Seen::Started {
                status,
                body_ok,
                summarized,
                ..
            } => {
                assert_eq!(*status, 200, "{name}: traffic flows");
                assert!(*body_ok, "{name}: body unchanged");
                assert!(!*summarized, "{name}: no plugin, no summary");
            }
            Seen::Refused(log) => panic!("remote {name}: Envoy refused to start:\n{log}"),
        }
    }
}

fn describe(seen: &Seen) -> String {
    match seen {
        Seen::Refused(log) => {
            let why: Vec<&str> = log
                .lines()
                .filter(|l| l.contains("wasm") || l.contains("Wasm") || l.contains("critical"))
                .take(3)
                .collect();
            format!("Envoy refused to start: {}", why.join(" | "))
        }
        Seen::Started {
            status,
            body_ok,
            summarized,
            log,
        } => {
            let why: Vec<&str> = log
                .lines()
                .filter(|l| {
                    (l.contains("wasm") || l.contains("Wasm"))
                        && (l.contains("fail") || l.contains("error") || l.contains("Fail"))
                })
                .take(2)
                .collect();
            format!(
                "started; a call got {status}, body unchanged {body_ok}, summarized {summarized}; log: {}",
                why.join(" | ")
            )
        }
    }
}

fn pseudo_random(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x1234_5678_9abc_def1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The same unloadable remote plugin under each failure policy: FAIL_OPEN
/// (and the deprecated `fail_open: true`) lets traffic through, FAIL_CLOSED
/// answers 503. Seen on Envoy 1.40: with `failure_policy: FAIL_OPEN` Envoy
/// still logs "Plugin configured to fail closed failed to load" (that line
/// reads the deprecated boolean), yet it fails open.
#[test]
fn remote_code_that_cannot_load_under_each_policy() {
    let real = default_wasm_path();
    let code = ScriptedUpstream::start().unwrap();
    let mut s = Script::json(404, b"not here".to_vec());
    s.content_type = "text/plain".into();
    code.script("", s);
    for (policy, want) in [
        ("failure_policy: FAIL_OPEN", 200),
        ("failure_policy: FAIL_CLOSED", 503),
        ("fail_open: true", 200),
    ] {
        let t = remote_template(code.addr, &sha256_hex(&real))
            .replace("failure_policy: FAIL_OPEN", policy);
        let seen = try_stack(&t, &real);
        eprintln!("remote 404, {policy}: {}", describe(&seen));
        match seen {
            Seen::Started {
                status, body_ok, ..
            } => {
                assert_eq!(status, want, "{policy}");
                assert_eq!(body_ok, want == 200, "{policy}");
            }
            Seen::Refused(log) => panic!("{policy}: Envoy refused to start:\n{log}"),
        }
    }
}
