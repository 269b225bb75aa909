//! Envoy's listener served from a file (xDS over the filesystem): the
//! bootstrap's `static_resources.listeners` move into `lds/listeners.json`,
//! which `dynamic_resources.lds_config` watches. Replacing that file (a
//! rename into the watched directory) is a config push: Envoy builds the new
//! filter chain and drains the old one, as on every Istio `WasmPlugin` edit.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

const LISTENER_TYPE: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";

/// The watched directory and the file in it.
pub fn lds_paths(dir: &Path) -> (PathBuf, PathBuf) {
    let watched = dir.join("lds");
    let file = watched.join("listeners.json");
    (watched, file)
}

/// Splits a rendered bootstrap (YAML) into one that reads its listeners from
/// `dir/lds/listeners.json` and that file's first version, written. Returns
/// the bootstrap as JSON (which Envoy reads as YAML).
pub fn split_listeners(rendered: &str, dir: &Path) -> Result<String, String> {
    let yaml: serde_norway::Value = serde_norway::from_str(rendered)
        .map_err(|e| format!("rendered config is not YAML: {e}"))?;
    let mut bootstrap: Value = serde_json::to_value(yaml)
        .map_err(|e| format!("rendered config is not JSON-shaped: {e}"))?;
    let listeners = bootstrap
        .get_mut("static_resources")
        .and_then(Value::as_object_mut)
        .and_then(|s| s.remove("listeners"))
        .and_then(|l| l.as_array().cloned())
        .ok_or("rendered config has no static_resources.listeners")?;
    let (watched, file) = lds_paths(dir);
    fs::create_dir_all(&watched)
        .map_err(|e| format!("cannot create {}: {e}", watched.display()))?;
    // Dynamic resources need a node identity, even from a file.
    if bootstrap.get("node").is_none() {
        bootstrap["node"] = json!({"id": "streamtap-test", "cluster": "streamtap-test"});
    }
    bootstrap["dynamic_resources"] = json!({
        "lds_config": {
            "resource_api_version": "V3",
            "path_config_source": {
                "path": file.display().to_string(),
                "watched_directory": {"path": watched.display().to_string()},
            },
        },
    });
    write_listeners(dir, &listeners, "1")?;
    serde_json::to_string_pretty(&bootstrap).map_err(|e| e.to_string())
}

/// The listeners of the current `listeners.json`.
pub fn read_listeners(dir: &Path) -> Result<Vec<Value>, String> {
    let (_, file) = lds_paths(dir);
    let text =
        fs::read_to_string(&file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let doc: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let resources = doc["resources"]
        .as_array()
        .ok_or("listeners.json has no resources")?;
    Ok(resources
        .iter()
        .map(|r| {
            let mut l = r.clone();
            if let Some(o) = l.as_object_mut() {
                o.remove("@type");
            }
            l
        })
        .collect())
}

/// Writes `listeners` as version `version`: into a temp file beside the
/// watched directory, then renamed into it, so Envoy never reads half a file.
pub fn write_listeners(dir: &Path, listeners: &[Value], version: &str) -> Result<(), String> {
    let (_, file) = lds_paths(dir);
    let resources: Vec<Value> = listeners
        .iter()
        .map(|l| {
            let mut r = l.clone();
            r["@type"] = json!(LISTENER_TYPE);
            r
        })
        .collect();
    let doc = json!({"version_info": version, "resources": resources});
    let tmp = dir.join(format!("listeners.{version}.json.tmp"));
    fs::write(&tmp, doc.to_string()).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &file).map_err(|e| format!("cannot move {} into place: {e}", tmp.display()))
}

/// The listeners with every mention of the `.wasm` at `from` naming `to`
/// instead: a push of another build (or of a missing file).
pub fn replace_wasm_path(listeners: &mut Vec<Value>, from: &Path, to: &str) -> Result<(), String> {
    let text = serde_json::to_string(listeners).map_err(|e| e.to_string())?;
    let from = from.display().to_string();
    if !text.contains(&from) {
        return Err(format!("the listeners do not name {from}"));
    }
    *listeners = serde_json::from_str(&text.replace(&from, to)).map_err(|e| e.to_string())?;
    Ok(())
}

/// Every Wasm filter's plugin `configuration` value in `listener` (the JSON
/// text the filter parses), for an edit.
pub fn plugin_configs(listener: &mut Value) -> Vec<&mut Value> {
    let mut out = Vec::new();
    collect_plugin_configs(listener, &mut out);
    out
}

fn collect_plugin_configs<'a>(v: &'a mut Value, out: &mut Vec<&'a mut Value>) {
    match v {
        Value::Object(o) => {
            if o.get("name").and_then(Value::as_str) == Some("envoy.filters.http.wasm") {
                if let Some(value) = o
                    .get_mut("typed_config")
                    .and_then(|t| t.get_mut("config"))
                    .and_then(|c| c.get_mut("configuration"))
                    .and_then(|c| c.get_mut("value"))
                {
                    out.push(value);
                }
                return;
            }
            for child in o.values_mut() {
                collect_plugin_configs(child, out);
            }
        }
        Value::Array(a) => {
            for child in a {
                collect_plugin_configs(child, out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RENDERED: &str = r#"
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 9901}}}
static_resources:
  listeners:
  - name: llm_ingress
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          http_filters:
          - name: envoy.filters.http.wasm
            typed_config:
              config:
                configuration: {"@type": "type.googleapis.com/google.protobuf.StringValue", value: '{"a":1}'}
          - name: envoy.filters.http.router
  clusters: []
"#;

    #[test]
    fn listeners_move_to_the_watched_file_and_pushes_replace_it() {
        let dir = crate::scratch::make_dir("lds-test").unwrap();
        let bootstrap: Value =
            serde_json::from_str(&split_listeners(RENDERED, &dir).unwrap()).unwrap();
        assert!(bootstrap["static_resources"].get("listeners").is_none());
        assert_eq!(bootstrap["static_resources"]["clusters"], json!([]));
        let (_, file) = lds_paths(&dir);
        let lds = &bootstrap["dynamic_resources"]["lds_config"]["path_config_source"];
        assert_eq!(lds["path"], file.display().to_string());
        let written: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(written["resources"][0]["@type"], LISTENER_TYPE);
        let mut listeners = read_listeners(&dir).unwrap();
        assert_eq!(listeners[0]["name"], "llm_ingress");
        let mut configs = plugin_configs(&mut listeners[0]);
        assert_eq!(configs.len(), 1);
        *configs[0] = json!(r#"{"a":2}"#);
        write_listeners(&dir, &listeners, "2").unwrap();
        let again = read_listeners(&dir).unwrap();
        let text = serde_json::to_string(&again).unwrap();
        assert!(text.contains(r#"{\"a\":2}"#), "{text}");
        let version: Value = serde_json::from_str(&fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(version["version_info"], "2");
        crate::scratch::remove_dir(&dir, "lds-test");
    }
}
