//! Every shipped Envoy config passes `envoy --mode validate` with the built
//! `.wasm` (validate mode loads the plugin and runs its configure step, so a
//! bad plugin config fails here too), and a broken one is caught.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use testbed::envoy::{envoy_bin, render, template_path, workspace_root, EnvoyOptions, RenderPorts};

/// Runs `envoy --mode validate` from the repository root (the shipped configs
/// name `dist/streamtap.wasm` relative to it).
fn validate(config: &Path) -> Result<(), String> {
    let out = Command::new(envoy_bin())
        .current_dir(workspace_root())
        .args(["--mode", "validate", "-l", "error", "-c"])
        .arg(config)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (run `make venv`)", envoy_bin().display()));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn scratch(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("streamtap-configs-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn provider_configs_validate() {
    assert!(
        workspace_root().join("dist/streamtap.wasm").exists(),
        "run `make build` first"
    );
    for name in ["openai.yaml", "anthropic.yaml"] {
        let path = workspace_root().join("envoy").join(name);
        validate(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

#[test]
fn the_test_and_demo_template_validates_once_rendered() {
    let addr: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let opts = EnvoyOptions::new(addr, addr);
    let ports = RenderPorts {
        admin_port: 19901,
        listen_port: 19000,
        access_log_path: std::env::temp_dir().join("streamtap-validate-access.log"),
    };
    let rendered = render(
        &std::fs::read_to_string(template_path()).unwrap(),
        &opts,
        &ports,
    )
    .unwrap();
    validate(&scratch("rendered.yaml", &rendered)).unwrap();
}

#[test]
fn a_broken_config_fails_validation() {
    let openai = std::fs::read_to_string(workspace_root().join("envoy/openai.yaml")).unwrap();
    // A plugin config with a typo: refused by the filter at configure time.
    let typo = openai.replace(r#"{"collector":{"cluster""#, r#"{"colector":{"cluster""#);
    assert_ne!(typo, openai);
    let err = validate(&scratch("typo.yaml", &typo))
        .expect_err("a plugin config typo must fail validation");
    assert!(err.contains("Unable to create Wasm plugin"), "{err}");
    // The log level is a config field; a level Envoy does not have is refused.
    let loud = openai.replace(
        r#"{"collector":{"cluster""#,
        r#"{"log_level":"loud","collector":{"cluster""#,
    );
    assert_ne!(loud, openai);
    assert!(validate(&scratch("loud.yaml", &loud)).is_err());
    let debug = openai.replace(
        r#"{"collector":{"cluster""#,
        r#"{"log_level":"debug","collector":{"cluster""#,
    );
    validate(&scratch("debug.yaml", &debug)).unwrap();
    // A cluster name the route does not know.
    let unknown_cluster = openai.replace("cluster: openai\n", "cluster: openia\n");
    assert_ne!(unknown_cluster, openai);
    assert!(validate(&scratch("cluster.yaml", &unknown_cluster)).is_err());
}
