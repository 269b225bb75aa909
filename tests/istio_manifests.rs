//! The Istio manifests in `deploy/istio/` are what a mesh user applies as shipped, so they are
//! checked the way the API server and the filter would check them:
//!
//! - every file is valid YAML (duplicate keys refused) of a known `apiVersion`/`kind`;
//! - `WasmPlugin` and `ServiceEntry` validate against Istio's own CRD `openAPIV3Schema`
//!   (`tests/data/istio/crds.yaml`, a copy kept in the repository; its source is noted beside it), with the API server's structural-schema rules:
//!   types, `required`, `enum`, `pattern`, lengths and bounds, unknown fields refused unless the
//!   schema preserves them, and every CEL `x-kubernetes-validations` rule on a path the
//!   manifests reach (a rule this file does not know fails the test instead of being skipped);
//! - the collector `Service` and the stats `ConfigMap` against small schemas of the core v1
//!   fields they use, and the gateway's pod-annotation patch against the shape of a
//!   Deployment strategic-merge patch that only touches the pod template's metadata;
//! - the ConfigMap's `custom_bootstrap.json` (Istio's bootstrap override) is JSON holding only a
//!   `stats_config`, equal to the `stats_config` of every `envoy/*.yaml`, and the patch's
//!   annotations name that ConfigMap and keep `wasmcustom.streamtap` stats;
//! - the `WasmPlugin`'s `pluginConfig`, turned into JSON the way Istio does, is accepted by
//!   `streamtap::config::Config::parse`, and its `collector.cluster` is the mesh's name
//!   (`outbound|PORT||HOST`) of the collector Service; the ServiceEntry file's documented
//!   cluster is the name of its own host and port.
//!
//! The negative tests at the end break one thing at a time and show each check bites.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use serde_json::{json, Map, Value};
use std::path::Path;
use streamtap::config::Config;

const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/istio/crds.yaml");
const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/istio");
const ENVOY_CONFIGS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/envoy");
const README: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
/// The file Istio's injector mounts from the `sidecar.istio.io/bootstrapOverride` ConfigMap.
const BOOTSTRAP_KEY: &str = "custom_bootstrap.json";
const BOOTSTRAP_OVERRIDE: &str = "sidecar.istio.io/bootstrapOverride";
const PROXY_CONFIG: &str = "proxy.istio.io/config";

// ---------------------------------------------------------------------------------------------
// Loading

/// All documents of a YAML stream as JSON values (empty documents dropped). Goes through
/// `serde_norway::Value`, which refuses duplicate keys and non-string keys as the API server does.
fn yaml_docs(text: &str, what: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut docs = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let yaml = serde_norway::Value::deserialize(doc)
            .map_err(|e| format!("{what}: document {i} is not valid YAML: {e}"))?;
        let value = serde_json::to_value(&yaml)
            .map_err(|e| format!("{what}: document {i} is not JSON-shaped: {e}"))?;
        if !value.is_null() {
            docs.push(value);
        }
    }
    Ok(docs)
}

fn crds() -> Vec<Value> {
    let text = std::fs::read_to_string(CRDS).unwrap_or_else(|e| {
        panic!(
            "cannot read Istio's CRD schemas at {CRDS}: {e}\n\
             (test data in the repository; this test validates deploy/istio/ against it and never skips)"
        )
    });
    let docs = yaml_docs(&text, CRDS).unwrap();
    assert!(!docs.is_empty(), "{CRDS} holds no CRD");
    docs
}

/// The `openAPIV3Schema` of `apiVersion` (`group/version`) and `kind`, from a served version.
fn crd_schema(crds: &[Value], api_version: &str, kind: &str) -> Value {
    let (group, version) = api_version
        .split_once('/')
        .unwrap_or_else(|| panic!("apiVersion {api_version:?} has no group"));
    let crd = crds
        .iter()
        .find(|c| c["spec"]["group"] == group && c["spec"]["names"]["kind"] == kind)
        .unwrap_or_else(|| panic!("{CRDS} has no CRD for {kind} in group {group}"));
    let v = crd["spec"]["versions"]
        .as_array()
        .and_then(|vs| vs.iter().find(|v| v["name"] == version))
        .unwrap_or_else(|| panic!("the {kind} CRD has no version {version}"));
    assert_eq!(v["served"], true, "{kind} {version} is not served");
    let schema = v["schema"]["openAPIV3Schema"].clone();
    assert!(
        schema.is_object(),
        "{kind} {version} has no openAPIV3Schema"
    );
    schema
}

struct Manifest {
    file: String,
    doc: Value,
}

fn manifests() -> Vec<Manifest> {
    let mut files: Vec<_> = std::fs::read_dir(DEPLOY)
        .unwrap_or_else(|e| panic!("cannot read {DEPLOY}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifest in {DEPLOY}");
    let mut out = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let docs = yaml_docs(&text, &file).unwrap_or_else(|e| panic!("{e}"));
        assert!(!docs.is_empty(), "{file}: no document");
        out.extend(docs.into_iter().map(|doc| Manifest {
            file: file.clone(),
            doc,
        }));
    }
    out
}

fn find<'a>(all: &'a [Manifest], file: &str, kind: &str) -> &'a Value {
    let found: Vec<_> = all
        .iter()
        .filter(|m| m.file == file && m.doc["kind"] == kind)
        .collect();
    assert_eq!(found.len(), 1, "{file} must hold exactly one {kind}");
    &found[0].doc
}

/// The one document of `file` without apiVersion/kind: a patch.
fn find_patch<'a>(all: &'a [Manifest], file: &str) -> &'a Value {
    let found: Vec<_> = all
        .iter()
        .filter(|m| m.file == file && is_patch(&m.doc))
        .collect();
    assert_eq!(found.len(), 1, "{file} must hold exactly one patch");
    &found[0].doc
}

// ---------------------------------------------------------------------------------------------
// Structural-schema validation, as the API server applies a CRD's openAPIV3Schema

fn validate(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let s = |k: &str| schema.get(k);
    if v.is_null() {
        if s("nullable") != Some(&Value::Bool(true)) {
            errs.push(format!("{path}: null is not allowed here"));
        }
        return;
    }
    if let Some(any_of) = s("anyOf").and_then(Value::as_array) {
        if !any_of.iter().any(|alt| {
            let mut e = Vec::new();
            validate(alt, v, path, &mut e);
            e.is_empty()
        }) {
            errs.push(format!("{path}: matches none of anyOf"));
        }
    }
    let int_or_string = s("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if int_or_string && !(is_integer(v) || v.is_string()) {
        errs.push(format!("{path}: must be an integer or a string"));
        return;
    }
    if let Some(t) = s("type").and_then(Value::as_str) {
        let ok = match t {
            "object" => v.is_object(),
            "array" => v.is_array(),
            "string" => v.is_string(),
            "integer" => is_integer(v),
            "number" => v.is_number(),
            "boolean" => v.is_boolean(),
            other => {
                errs.push(format!("{path}: schema type {other:?} is not handled here"));
                return;
            }
        };
        if !ok {
            errs.push(format!("{path}: must be of type {t}, got {v}"));
            return;
        }
    }
    if let Some(values) = s("enum").and_then(Value::as_array) {
        if !values.contains(v) {
            errs.push(format!(
                "{path}: {v} is not one of {}",
                Value::from(values.clone())
            ));
        }
    }
    match v {
        Value::String(text) => validate_string(schema, text, path, errs),
        Value::Number(_) => validate_number(schema, v, path, errs),
        Value::Array(items) => validate_array(schema, items, path, errs),
        Value::Object(fields) => validate_object(schema, fields, path, errs),
        _ => {}
    }
    if let Some(rules) = s("x-kubernetes-validations").and_then(Value::as_array) {
        for r in rules {
            let rule = r["rule"].as_str().unwrap_or_default();
            let norm = rule.split_whitespace().collect::<Vec<_>>().join(" ");
            match cel(&norm, v) {
                Some(true) => {}
                Some(false) => errs.push(format!("{path}: {}", r["message"])),
                None => errs.push(format!(
                    "{path}: CEL rule not checked by tests/istio_manifests.rs (add it to `cel`): {norm}"
                )),
            }
        }
    }
}

fn is_integer(v: &Value) -> bool {
    v.is_i64() || v.is_u64()
}

fn validate_string(schema: &Value, text: &str, path: &str, errs: &mut Vec<String>) {
    let chars = text.chars().count() as u64;
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if chars < min {
            errs.push(format!("{path}: shorter than minLength {min}"));
        }
    }
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if chars > max {
            errs.push(format!("{path}: longer than maxLength {max}"));
        }
    }
    if let Some(p) = schema.get("pattern").and_then(Value::as_str) {
        let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("bad pattern {p:?}: {e}"));
        if !re.is_match(text) {
            errs.push(format!("{path}: {text:?} does not match pattern {p:?}"));
        }
    }
}

fn validate_number(schema: &Value, v: &Value, path: &str, errs: &mut Vec<String>) {
    let n = v.as_f64().unwrap();
    let bound = |k: &str| schema.get(k).and_then(Value::as_f64);
    let flag = |k: &str| schema.get(k) == Some(&Value::Bool(true));
    if let Some(min) = bound("minimum") {
        if n < min || (flag("exclusiveMinimum") && n == min) {
            errs.push(format!("{path}: {v} is below the minimum {min}"));
        }
    }
    if let Some(max) = bound("maximum") {
        if n > max || (flag("exclusiveMaximum") && n == max) {
            errs.push(format!("{path}: {v} is above the maximum {max}"));
        }
    }
    let range = match schema.get("format").and_then(Value::as_str) {
        Some("int32") => Some((f64::from(i32::MIN), f64::from(i32::MAX))),
        Some("uint32") => Some((0.0, f64::from(u32::MAX))),
        _ => None,
    };
    if let Some((lo, hi)) = range {
        if n < lo || n > hi {
            errs.push(format!("{path}: {v} is out of range of its format"));
        }
    }
}

fn validate_array(schema: &Value, items: &[Value], path: &str, errs: &mut Vec<String>) {
    let len = items.len() as u64;
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
        if len < min {
            errs.push(format!("{path}: fewer than minItems {min}"));
        }
    }
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
        if len > max {
            errs.push(format!("{path}: more than maxItems {max}"));
        }
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            validate(item_schema, item, &format!("{path}[{i}]"), errs);
        }
    }
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("map") => {
            let keys: Vec<&str> = schema["x-kubernetes-list-map-keys"]
                .as_array()
                .map(|ks| ks.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let mut seen = Vec::new();
            for item in items {
                let key: Vec<&Value> = keys.iter().map(|k| &item[*k]).collect();
                if seen.contains(&key) {
                    errs.push(format!("{path}: duplicate entries for map keys {keys:?}"));
                }
                seen.push(key);
            }
        }
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errs.push(format!("{path}: duplicate entry {item} in a set"));
                }
            }
        }
        _ => {}
    }
}

fn validate_object(
    schema: &Value,
    fields: &Map<String, Value>,
    path: &str,
    errs: &mut Vec<String>,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for r in required.iter().filter_map(Value::as_str) {
            if !fields.contains_key(r) {
                errs.push(format!("{path}: required field `{r}` is missing"));
            }
        }
    }
    let count = fields.len() as u64;
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64) {
        if count > max {
            errs.push(format!("{path}: more than maxProperties {max}"));
        }
    }
    if let Some(min) = schema.get("minProperties").and_then(Value::as_u64) {
        if count < min {
            errs.push(format!("{path}: fewer than minProperties {min}"));
        }
    }
    let properties = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties");
    let preserve = schema.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    for (key, value) in fields {
        let sub = format!("{path}.{key}");
        if let Some(p) = properties.and_then(|ps| ps.get(key)) {
            validate(p, value, &sub, errs);
        } else if let Some(a) = additional.filter(|a| a.is_object()) {
            validate(a, value, &sub, errs);
        } else if !(preserve || additional == Some(&Value::Bool(true))) {
            errs.push(format!(
                "{sub}: unknown field (the schema does not allow it)"
            ));
        }
    }
}

/// The CEL rules of the schemas, by their text (whitespace normalized). `None`: not known here.
fn cel(rule: &str, s: &Value) -> Option<bool> {
    let has = |k: &str| s.get(k).is_some_and(|v| !v.is_null());
    let count = |ks: &[&str]| ks.iter().filter(|k| has(k)).count();
    let text = s.as_str().unwrap_or_default();
    let keys = || s.as_object().into_iter().flat_map(|m| m.keys());
    let field = |k: &str| s.get(k).and_then(Value::as_str);
    let ok = match rule {
        r#"(has(self.selector) ? 1 : 0) + (has(self.targetRef) ? 1 : 0) + (has(self.targetRefs) ? 1 : 0) <= 1"# => {
            count(&["selector", "targetRef", "targetRefs"]) <= 1
        }
        r#"(has(self.workloadSelector) ? 1 : 0) + (has(self.endpoints) ? 1 : 0) <= 1"# => {
            count(&["workloadSelector", "endpoints"]) <= 1
        }
        r#"self.all(key, !key.contains("*"))"# => keys().all(|k| !k.contains('*')),
        r#"self.all(key, key.size() != 0)"# => keys().all(|k| !k.is_empty()),
        r#"!self.contains("*")"# => !text.contains('*'),
        r#"self != "*""# => text != "*",
        r#"self.size() == 0"# => text.is_empty(),
        r#"isURL(self) ? (url(self).getScheme() in ["", "http", "https", "oci", "file"]) : (isURL("http://" + self) && url("http://" + self).getScheme() in ["", "http", "https", "oci", "file"])"# => {
            match text.split_once("://") {
                Some((scheme, rest)) => {
                    ["http", "https", "oci", "file"].contains(&scheme.to_ascii_lowercase().as_str())
                        && !rest.is_empty()
                }
                None => !text.is_empty() && !text.contains(char::is_whitespace),
            }
        }
        r#"(has(self.valueFrom) ? self.valueFrom : "") != "HOST" || !has(self.value)"# => {
            field("valueFrom") != Some("HOST") || !has("value")
        }
        r#"!((has(self.addresses) ? self.addresses : []).exists(k, k.contains("/")) && !((has(self.resolution) ? self.resolution : "NONE") in ["STATIC", "NONE"]))"# =>
        {
            let cidr = s["addresses"].as_array().is_some_and(|a| {
                a.iter()
                    .any(|k| k.as_str().unwrap_or_default().contains('/'))
            });
            !cidr || matches!(field("resolution").unwrap_or("NONE"), "STATIC" | "NONE")
        }
        r#"((has(self.resolution) ? self.resolution : "NONE") == "NONE") ? !has(self.endpoints) : true"# => {
            field("resolution").unwrap_or("NONE") != "NONE" || !has("endpoints")
        }
        r#"((has(self.resolution) ? self.resolution : "") == "DNS_ROUND_ROBIN") ? ((has(self.endpoints) ? self.endpoints : []).size() <= 1) : true"# => {
            field("resolution") != Some("DNS_ROUND_ROBIN")
                || s["endpoints"].as_array().map_or(0, Vec::len) <= 1
        }
        r#"has(self.address) || has(self.network)"# => has("address") || has("network"),
        r#"(has(self.address) ? self.address : "").startsWith("unix://") ? !has(self.ports) : true"# => {
            !field("address").unwrap_or_default().starts_with("unix://") || !has("ports")
        }
        r#"self.startsWith("unix://") ? (self.substring(7, 8) == "/" || self.substring(7, 8) == "@") : true"# => {
            text.strip_prefix("unix://")
                .is_none_or(|rest| rest.starts_with('/') || rest.starts_with('@'))
        }
        r#"self.startsWith("unix://") ? !self.endsWith("/") : true"# => {
            !text.starts_with("unix://") || !text.ends_with('/')
        }
        r#"self.all(key, size(key) < 63 && key.matches("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$"))"# =>
        {
            let re = regex::Regex::new("^[a-zA-Z0-9](?:[-a-zA-Z0-9]*[a-zA-Z0-9])?$").unwrap();
            keys().all(|k| k.chars().count() < 63 && re.is_match(k))
        }
        r#"0 < self && self <= 65535"# => s.as_i64().is_some_and(|n| 0 < n && n <= 65535),
        r#"self.all(l1, self.exists_one(l2, l1.number == l2.number))"# => {
            let items = s.as_array().cloned().unwrap_or_default();
            items.iter().all(|l1| {
                items
                    .iter()
                    .filter(|l2| l1["number"] == l2["number"])
                    .count()
                    == 1
            })
        }
        _ => return None,
    };
    Some(ok)
}

/// `metadata` of a manifest: the fields a manifest sets, with the API server's name rules.
fn validate_metadata(meta: &Value, path: &str, errs: &mut Vec<String>) {
    let dns_label = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
    let dns_subdomain = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";
    let label_value = r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$";
    let strings = |pattern: Option<&str>, max: Option<u64>| {
        let mut s = json!({"type": "string"});
        if let Some(p) = pattern {
            s["pattern"] = p.into();
        }
        if let Some(m) = max {
            s["maxLength"] = m.into();
        }
        s
    };
    let schema = json!({
        "type": "object",
        "required": ["name", "namespace"],
        "properties": {
            "name": strings(Some(dns_subdomain), Some(253)),
            "namespace": strings(Some(dns_label), Some(63)),
            "labels": {"type": "object", "additionalProperties": strings(Some(label_value), Some(63))},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
        }
    });
    validate(&schema, meta, path, errs);
}

/// A custom resource against its CRD: `apiVersion`, `kind` and `metadata` are implicit in an
/// openAPIV3Schema; `status` belongs to the controller.
fn validate_custom_resource(crds: &[Value], doc: &Value) -> Vec<String> {
    let api_version = doc["apiVersion"].as_str().unwrap_or_default();
    let kind = doc["kind"].as_str().unwrap_or_default();
    let mut schema = crd_schema(crds, api_version, kind);
    let props = schema["properties"].as_object_mut().unwrap();
    props.insert("apiVersion".into(), json!({"type": "string"}));
    props.insert("kind".into(), json!({"type": "string"}));
    props.insert(
        "metadata".into(),
        json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
    );
    let mut errs = Vec::new();
    validate(&schema, doc, kind, &mut errs);
    validate_metadata(&doc["metadata"], &format!("{kind}.metadata"), &mut errs);
    if doc.get("status").is_some() {
        errs.push(format!(
            "{kind}.status: set by the controller, not by a manifest"
        ));
    }
    errs
}

/// The core v1 `Service` fields a collector Service uses, with the API server's rules.
fn validate_service(doc: &Value) -> Vec<String> {
    let port = json!({"type": "integer", "minimum": 1, "maximum": 65535});
    let schema = json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"enum": ["v1"]},
            "kind": {"enum": ["Service"]},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "spec": {
                "type": "object",
                "required": ["ports"],
                "properties": {
                    "type": {"enum": ["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"]},
                    "selector": {"type": "object", "additionalProperties": {"type": "string"}},
                    "ports": {
                        "type": "array",
                        "minItems": 1,
                        "x-kubernetes-list-type": "map",
                        "x-kubernetes-list-map-keys": ["port", "protocol"],
                        "items": {
                            "type": "object",
                            "required": ["port"],
                            "properties": {
                                "name": {"type": "string", "maxLength": 63,
                                         "pattern": "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                                "appProtocol": {"type": "string"},
                                "protocol": {"enum": ["TCP", "UDP", "SCTP"]},
                                "port": port,
                                "targetPort": {"x-kubernetes-int-or-string": true},
                            }
                        }
                    }
                }
            }
        }
    });
    let mut errs = Vec::new();
    validate(&schema, doc, "Service", &mut errs);
    validate_metadata(&doc["metadata"], "Service.metadata", &mut errs);
    errs
}

/// The core v1 `ConfigMap` fields, with the API server's key rules and size bound.
fn validate_config_map(doc: &Value) -> Vec<String> {
    let strings = json!({"type": "object", "additionalProperties": {"type": "string"}});
    let schema = json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "data"],
        "properties": {
            "apiVersion": {"enum": ["v1"]},
            "kind": {"enum": ["ConfigMap"]},
            "metadata": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "data": strings,
            "binaryData": strings,
            "immutable": {"type": "boolean"},
        }
    });
    let mut errs = Vec::new();
    validate(&schema, doc, "ConfigMap", &mut errs);
    validate_metadata(&doc["metadata"], "ConfigMap.metadata", &mut errs);
    let key = regex::Regex::new(r"^[-._a-zA-Z0-9]+$").unwrap();
    let mut size = 0;
    for field in ["data", "binaryData"] {
        for (k, v) in doc[field].as_object().into_iter().flatten() {
            if !key.is_match(k) || k.len() > 253 {
                errs.push(format!(
                    "ConfigMap.{field}: key {k:?} is not a valid ConfigMap key"
                ));
            }
            size += k.len() + v.as_str().map_or(0, str::len);
        }
    }
    if size > 1024 * 1024 {
        errs.push(format!(
            "ConfigMap: {size} bytes of data, over the 1 MiB limit"
        ));
    }
    errs
}

/// A document without apiVersion and kind: a patch file, not a manifest.
fn is_patch(doc: &Value) -> bool {
    doc.get("apiVersion").is_none() && doc.get("kind").is_none()
}

/// A strategic-merge patch of a Deployment (`kubectl patch deployment --patch-file`) that sets
/// only pod-template annotations or labels, with the API server's key and value rules.
fn validate_pod_template_patch(doc: &Value) -> Vec<String> {
    let strings = json!({"type": "object", "minProperties": 1,
                         "additionalProperties": {"type": "string"}});
    let schema = json!({
        "type": "object",
        "required": ["spec"],
        "properties": {"spec": {
            "type": "object",
            "required": ["template"],
            "properties": {"template": {
                "type": "object",
                "required": ["metadata"],
                "properties": {"metadata": {
                    "type": "object",
                    "minProperties": 1,
                    "properties": {"annotations": strings, "labels": strings}
                }}
            }}
        }}
    });
    let mut errs = Vec::new();
    validate(&schema, doc, "patch", &mut errs);
    let meta = &doc["spec"]["template"]["metadata"];
    // A qualified name: an optional DNS-subdomain prefix and `/`, then a name of at most 63.
    let name = regex::Regex::new(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$").unwrap();
    let prefix =
        regex::Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
            .unwrap();
    for field in ["annotations", "labels"] {
        for key in meta[field].as_object().into_iter().flat_map(|m| m.keys()) {
            let (p, n) = key
                .rsplit_once('/')
                .map_or((None, key.as_str()), |(p, n)| (Some(p), n));
            let ok = name.is_match(n)
                && n.len() <= 63
                && p.is_none_or(|p| prefix.is_match(p) && p.len() <= 253);
            if !ok {
                errs.push(format!(
                    "patch.spec.template.metadata.{field}: bad key {key:?}"
                ));
            }
        }
    }
    errs
}

fn validate_manifest(crds: &[Value], doc: &Value) -> Vec<String> {
    if is_patch(doc) {
        return validate_pod_template_patch(doc);
    }
    match (doc["apiVersion"].as_str(), doc["kind"].as_str()) {
        (Some("extensions.istio.io/v1alpha1"), Some("WasmPlugin"))
        | (Some("networking.istio.io/v1"), Some("ServiceEntry")) => {
            validate_custom_resource(crds, doc)
        }
        (Some("v1"), Some("Service")) => validate_service(doc),
        (Some("v1"), Some("ConfigMap")) => validate_config_map(doc),
        (api, kind) => vec![format!(
            "unexpected apiVersion/kind {api:?}/{kind:?} (not checked by this test: add it)"
        )],
    }
}

// ---------------------------------------------------------------------------------------------
// Mesh names and the plugin config

/// Istio's names of the outbound clusters of a Service: `outbound|PORT||NAME.NAMESPACE.svc.cluster.local`.
fn service_clusters(svc: &Value) -> Vec<(String, String)> {
    let host = format!(
        "{}.{}.svc.cluster.local",
        svc["metadata"]["name"].as_str().unwrap(),
        svc["metadata"]["namespace"].as_str().unwrap()
    );
    svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (format!("outbound|{}||{host}", p["port"]), host.clone()))
        .collect()
}

/// Istio's names of the outbound clusters of a ServiceEntry: `outbound|NUMBER||HOST` per host and port.
fn service_entry_clusters(se: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for host in se["spec"]["hosts"].as_array().unwrap() {
        let host = host.as_str().unwrap();
        for p in se["spec"]["ports"].as_array().unwrap() {
            out.push((
                format!("outbound|{}||{host}", p["number"]),
                host.to_string(),
            ));
        }
    }
    out
}

/// `pluginConfig` as the filter receives it: Istio marshals the protobuf Struct to JSON, where
/// every number is a double (printed without a fraction when it has none).
fn istio_json(v: &Value) -> Value {
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap();
            if f.fract() == 0.0 && f.abs() < 9.0e15 {
                Value::from(f as i64)
            } else {
                Value::from(f)
            }
        }
        Value::Array(a) => Value::Array(a.iter().map(istio_json).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, v)| (k.clone(), istio_json(v))).collect())
        }
        other => other.clone(),
    }
}

/// The errors in a plugin config, as the filter's own parser sees it; the parsed config when none.
fn check_plugin_config(plugin_config: &Value) -> Result<Config, String> {
    let mut last = None;
    // Both as written (YAML numbers) and as Istio hands it over (doubles): the filter must take both.
    for json in [plugin_config.clone(), istio_json(plugin_config)] {
        let bytes = serde_json::to_vec(&json).unwrap();
        let config = Config::parse(&bytes).map_err(|e| {
            format!(
                "the filter refuses pluginConfig {}: {e}",
                String::from_utf8_lossy(&bytes)
            )
        })?;
        last = Some(config);
    }
    Ok(last.unwrap())
}

/// `# collector.cluster: ...` style lines of a file's comments.
fn documented(file: &str, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(Path::new(DEPLOY).join(file)).unwrap();
    let needle = format!("{key}:");
    text.lines()
        .filter_map(|l| l.trim_start().strip_prefix('#'))
        .find_map(|l| {
            l.trim()
                .strip_prefix(needle.as_str())
                .map(|v| v.trim().to_string())
        })
}

// ---------------------------------------------------------------------------------------------
// The bootstrap override and the gateway's pod annotations

/// The `stats_config` of every `envoy/*.yaml`, by file name (they are the copies to match).
fn envoy_stats_configs() -> Vec<(String, Value)> {
    let mut files: Vec<_> = std::fs::read_dir(ENVOY_CONFIGS)
        .unwrap_or_else(|e| panic!("cannot read {ENVOY_CONFIGS}: {e}"))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("yaml"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|path| {
            let file = path.file_name().unwrap().to_string_lossy().into_owned();
            // streamtap.yaml is a template: its `${NAME}` placeholders (ports, paths) are not
            // YAML inside flow mappings, and none is in stats_config.
            let text = std::fs::read_to_string(path).unwrap();
            let placeholder = regex::Regex::new(r"\$\{[A-Z_]+\}").unwrap();
            let text = placeholder.replace_all(&text, "0");
            let docs = yaml_docs(&text, &file).unwrap_or_else(|e| panic!("{e}"));
            let stats = docs[0]["stats_config"].clone();
            assert!(stats.is_object(), "envoy/{file} has no stats_config");
            (file, stats)
        })
        .collect()
}

/// The errors of the override ConfigMap: its `custom_bootstrap.json` must be a JSON bootstrap
/// fragment holding only `stats_config`, equal to each of `expected`.
fn check_stats_bootstrap(cm: &Value, expected: &[(String, Value)]) -> Vec<String> {
    let Some(text) = cm["data"][BOOTSTRAP_KEY].as_str() else {
        return vec![format!(
            "ConfigMap has no data.{BOOTSTRAP_KEY}, the file Istio mounts"
        )];
    };
    let fragment: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return vec![format!("{BOOTSTRAP_KEY} is not JSON: {e}")],
    };
    let mut errs = Vec::new();
    // Anything else would change Istio's own bootstrap.
    let keys: Vec<&String> = fragment
        .as_object()
        .into_iter()
        .flat_map(|m| m.keys())
        .collect();
    if keys != ["stats_config"] {
        errs.push(format!(
            "{BOOTSTRAP_KEY} must hold stats_config alone, holds {keys:?}"
        ));
    }
    for (file, stats) in expected {
        if fragment["stats_config"] != *stats {
            errs.push(format!(
                "{BOOTSTRAP_KEY}: stats_config differs from envoy/{file}'s; it should be\n{}",
                json!({"stats_config": stats})
            ));
        }
    }
    errs
}

/// The errors of the pod-annotation patch against the override ConfigMap.
fn check_pod_annotations(patch: &Value, cm: &Value) -> Vec<String> {
    let annotations = &patch["spec"]["template"]["metadata"]["annotations"];
    let mut errs = Vec::new();
    if annotations[BOOTSTRAP_OVERRIDE] != cm["metadata"]["name"] {
        errs.push(format!(
            "{BOOTSTRAP_OVERRIDE} is {}, not the ConfigMap's name {}",
            annotations[BOOTSTRAP_OVERRIDE], cm["metadata"]["name"]
        ));
    }
    let proxy_config = annotations[PROXY_CONFIG].as_str().unwrap_or_default();
    match serde_json::from_str::<Value>(proxy_config) {
        Err(e) => errs.push(format!("{PROXY_CONFIG} is not JSON: {e}")),
        Ok(pc) => {
            let kept = pc["proxyStatsMatcher"]["inclusionPrefixes"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .any(|p| "wasmcustom.streamtap.calls".starts_with(p));
            if !kept {
                errs.push(format!(
                    "{PROXY_CONFIG}: proxyStatsMatcher.inclusionPrefixes must keep wasmcustom.streamtap"
                ));
            }
        }
    }
    errs
}

// ---------------------------------------------------------------------------------------------
// The checks

#[test]
fn every_manifest_is_valid_yaml_of_a_known_kind_and_validates_against_its_schema() {
    let crds = crds();
    let all = manifests();
    let mut errs = Vec::new();
    for m in &all {
        errs.extend(
            validate_manifest(&crds, &m.doc)
                .into_iter()
                .map(|e| format!("{}: {e}", m.file)),
        );
    }
    assert!(errs.is_empty(), "invalid manifests:\n{}", errs.join("\n"));
    // The files README.md tells users to apply.
    find(&all, "wasmplugin.yaml", "WasmPlugin");
    find(&all, "collector.yaml", "Service");
    find(&all, "collector-serviceentry.yaml", "ServiceEntry");
    find(&all, "stats-bootstrap.yaml", "ConfigMap");
    find_patch(&all, "gateway-pod-annotations.yaml");
}

#[test]
fn stats_bootstrap_carries_the_stats_config_of_every_envoy_config() {
    let all = manifests();
    let cm = find(&all, "stats-bootstrap.yaml", "ConfigMap");
    let configs = envoy_stats_configs();
    let files: Vec<&str> = configs.iter().map(|(f, _)| f.as_str()).collect();
    for shipped in ["streamtap.yaml", "openai.yaml", "anthropic.yaml"] {
        assert!(
            files.contains(&shipped),
            "envoy/{shipped} missing: {files:?}"
        );
    }
    let errs = check_stats_bootstrap(cm, &configs);
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    // The ConfigMap must sit in the gateway's namespace, the WasmPlugin's.
    let plugin = find(&all, "wasmplugin.yaml", "WasmPlugin");
    assert_eq!(cm["metadata"]["namespace"], plugin["metadata"]["namespace"]);
}

#[test]
fn gateway_pod_annotations_name_the_configmap_and_are_the_documented_ones() {
    let all = manifests();
    let cm = find(&all, "stats-bootstrap.yaml", "ConfigMap");
    let patch = find_patch(&all, "gateway-pod-annotations.yaml");
    let errs = check_pod_annotations(patch, cm);
    assert!(errs.is_empty(), "{}", errs.join("\n"));
    // README.md and the ConfigMap's comment show these annotation lines as they are in the patch.
    let patch_text =
        std::fs::read_to_string(Path::new(DEPLOY).join("gateway-pod-annotations.yaml")).unwrap();
    let lines: Vec<&str> = patch_text
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(BOOTSTRAP_OVERRIDE) || l.starts_with(PROXY_CONFIG))
        .collect();
    assert_eq!(lines.len(), 2, "{patch_text}");
    let readme = std::fs::read_to_string(README).unwrap();
    let cm_text = std::fs::read_to_string(Path::new(DEPLOY).join("stats-bootstrap.yaml")).unwrap();
    for line in lines {
        assert!(readme.contains(line), "README.md does not show `{line}`");
        assert!(
            cm_text.contains(line),
            "stats-bootstrap.yaml does not show `{line}`"
        );
    }
}

#[test]
fn wasm_plugin_is_fail_open_http_and_pins_its_module() {
    let all = manifests();
    let spec = &find(&all, "wasmplugin.yaml", "WasmPlugin")["spec"];
    assert_eq!(
        spec["failStrategy"], "FAIL_OPEN",
        "an observability filter must never fail traffic"
    );
    assert_eq!(spec["type"], "HTTP");
    assert_eq!(spec["phase"], "STATS");
    let labels = spec["selector"]["matchLabels"].as_object();
    assert!(
        labels.is_some_and(|l| !l.is_empty()),
        "select the LLM gateway workload, not a whole namespace"
    );
    let url = spec["url"].as_str().unwrap();
    if !url.starts_with("oci://") {
        let sha = spec["sha256"].as_str().unwrap_or_default();
        assert_eq!(
            sha.len(),
            64,
            "a module fetched from {url} must carry its sha256"
        );
    }
}

/// `pin-module.sh` renders the shipped WasmPlugin fetching the module over HTTPS, pinned by the
/// checksum of the module file: the output still validates, and the pin is that file's sha256.
#[test]
fn pinned_manifest_carries_the_modules_sha256_and_validates() {
    let dir = std::env::temp_dir().join(format!("streamtap-pin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wasm = dir.join("module.wasm");
    std::fs::write(
        &wasm,
        b"\0asm\x01\0\0\0 not a real module, only its bytes matter",
    )
    .unwrap();
    let pin = |url: &str| {
        std::process::Command::new(Path::new(DEPLOY).join("pin-module.sh"))
            .arg(url)
            .arg(&wasm)
            .output()
            .unwrap()
    };
    let out = pin("https://example.com/streamtap/0.1.0/streamtap.wasm");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs = yaml_docs(&String::from_utf8(out.stdout).unwrap(), "pinned").unwrap();
    let doc = &docs[0];
    let errs = validate_manifest(&crds(), doc);
    assert!(errs.is_empty(), "pinned manifest invalid: {errs:?}");
    let sum = std::process::Command::new("sha256sum")
        .arg(&wasm)
        .output()
        .unwrap();
    let expected = String::from_utf8(sum.stdout).unwrap();
    let expected = expected.split_whitespace().next().unwrap();
    assert_eq!(doc["spec"]["sha256"], expected);
    assert_eq!(
        doc["spec"]["url"],
        "https://example.com/streamtap/0.1.0/streamtap.wasm"
    );
    // The rest of the spec is the shipped one.
    let all = manifests();
    let shipped = find(&all, "wasmplugin.yaml", "WasmPlugin");
    assert_eq!(doc["spec"]["pluginConfig"], shipped["spec"]["pluginConfig"]);
    // A plain-HTTP URL is refused: a pin over an unauthenticated fetch is no pin.
    assert!(!pin("http://example.com/streamtap.wasm").status.success());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn plugin_config_is_accepted_by_the_filter_and_points_at_the_collector_service() {
    let all = manifests();
    let plugin = find(&all, "wasmplugin.yaml", "WasmPlugin");
    let config =
        check_plugin_config(&plugin["spec"]["pluginConfig"]).unwrap_or_else(|e| panic!("{e}"));
    let collector = config
        .collector
        .expect("pluginConfig must export to a collector");

    let svc = find(&all, "collector.yaml", "Service");
    let clusters = service_clusters(svc);
    let (_, host) = clusters
        .iter()
        .find(|(c, _)| *c == collector.cluster)
        .unwrap_or_else(|| {
            panic!(
                "collector.cluster {:?} is not a cluster of the collector Service; Istio names them {:?}",
                collector.cluster,
                clusters.iter().map(|(c, _)| c).collect::<Vec<_>>()
            )
        });
    assert_eq!(
        &collector.authority, host,
        "collector.authority should be the Service's host"
    );
    // The collector's port must be HTTP to Istio (a port name `http*` or appProtocol http).
    let port = svc["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| {
            collector
                .cluster
                .starts_with(&format!("outbound|{}||", p["port"]))
        })
        .unwrap();
    let http = |v: &Value| v.as_str().is_some_and(|s| s.starts_with("http"));
    assert!(
        http(&port["name"]) || http(&port["appProtocol"]),
        "Istio must see the collector port as HTTP"
    );
}

#[test]
fn service_entry_documents_its_own_cluster_and_that_config_is_accepted() {
    let all = manifests();
    let se = find(&all, "collector-serviceentry.yaml", "ServiceEntry");
    let spec = &se["spec"];
    assert_eq!(spec["resolution"], "DNS");
    assert_eq!(spec["location"], "MESH_EXTERNAL");
    assert!(spec["ports"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["protocol"] == "HTTP"));

    let cluster = documented("collector-serviceentry.yaml", "collector.cluster")
        .expect("collector-serviceentry.yaml must say which collector.cluster to set");
    let authority = documented("collector-serviceentry.yaml", "collector.authority")
        .expect("collector-serviceentry.yaml must say which collector.authority to set");
    let clusters = service_entry_clusters(se);
    assert!(
        clusters.iter().any(|(c, h)| *c == cluster && *h == authority),
        "documented cluster {cluster:?} / authority {authority:?} are not those of the ServiceEntry: {clusters:?}"
    );
    // The WasmPlugin with those two edits is still accepted by the filter.
    let plugin = find(&all, "wasmplugin.yaml", "WasmPlugin");
    let mut pc = plugin["spec"]["pluginConfig"].clone();
    pc["collector"]["cluster"] = cluster.clone().into();
    pc["collector"]["authority"] = authority.into();
    let config = check_plugin_config(&pc).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.collector.unwrap().cluster, cluster);
}

// ---------------------------------------------------------------------------------------------
// The checks bite: each broken manifest below must be refused.

fn broken(file: &str, kind: &str, edit: impl FnOnce(&mut Value)) -> Vec<String> {
    let crds = crds();
    let all = manifests();
    let mut doc = find(&all, file, kind).clone();
    edit(&mut doc);
    validate_manifest(&crds, &doc)
}

fn assert_refused(errs: &[String], needle: &str) {
    assert!(
        errs.iter().any(|e| e.contains(needle)),
        "expected an error containing {needle:?}, got {errs:?}"
    );
}

#[test]
fn broken_wasm_plugins_are_refused() {
    let wp = |edit: fn(&mut Value)| broken("wasmplugin.yaml", "WasmPlugin", edit);
    assert_refused(
        &wp(|d| d["spec"]["failStrategy"] = "FAIL_OPENLY".into()),
        "spec.failStrategy",
    );
    assert_refused(&wp(|d| d["spec"]["phase"] = "LATE".into()), "spec.phase");
    assert_refused(&wp(|d| d["spec"]["type"] = "GRPC".into()), "spec.type");
    assert_refused(
        &wp(|d| d["spec"]["failstrategy"] = "FAIL_OPEN".into()),
        "spec.failstrategy: unknown field",
    );
    assert_refused(
        &wp(|d| d["spec"]["match"][0]["direction"] = "in".into()),
        "unknown field",
    );
    assert_refused(
        &wp(|d| d["spec"]["match"][0]["mode"] = "INBOUND".into()),
        "spec.match[0].mode",
    );
    assert_refused(
        &wp(|d| {
            d["spec"].as_object_mut().unwrap().remove("url");
        }),
        "required field `url`",
    );
    assert_refused(
        &wp(|d| d["spec"]["url"] = "ftp://example.com/x.wasm".into()),
        "url must have schema",
    );
    assert_refused(&wp(|d| d["spec"]["sha256"] = "abc".into()), "spec.sha256");
    assert_refused(
        &wp(|d| d["spec"]["priority"] = "high".into()),
        "spec.priority: must be of type integer",
    );
    assert_refused(
        &wp(|d| d["spec"]["priority"] = 5_000_000_000u64.into()),
        "out of range",
    );
    assert_refused(
        &wp(|d| d["spec"]["selector"]["matchLabels"]["app"] = "llm-*".into()),
        "wildcard",
    );
    assert_refused(
        &wp(|d| d["spec"]["targetRefs"] = json!([{"kind": "Gateway", "name": "gw"}])),
        "only one of targetRefs or selector",
    );
    assert_refused(
        &wp(|d| d["metadata"]["name"] = "StreamTap".into()),
        "metadata.name",
    );
}

#[test]
fn other_api_versions_are_refused() {
    let errs = broken("wasmplugin.yaml", "WasmPlugin", |d| {
        d["apiVersion"] = "extensions.istio.io/v1".into()
    });
    assert_refused(&errs, "unexpected apiVersion/kind");
    let errs = broken("collector-serviceentry.yaml", "ServiceEntry", |d| {
        d["apiVersion"] = "networking.istio.io/v1beta2".into();
    });
    assert_refused(&errs, "unexpected apiVersion/kind");
}

#[test]
#[should_panic(expected = "no version v9")]
fn a_version_missing_from_the_crds_is_refused() {
    crd_schema(&crds(), "extensions.istio.io/v9", "WasmPlugin");
}

#[test]
fn broken_service_entries_and_services_are_refused() {
    let se = |edit: fn(&mut Value)| broken("collector-serviceentry.yaml", "ServiceEntry", edit);
    assert_refused(
        &se(|d| d["spec"]["resolution"] = "DNS_LOOKUP".into()),
        "spec.resolution",
    );
    assert_refused(
        &se(|d| {
            d["spec"].as_object_mut().unwrap().remove("hosts");
        }),
        "required field `hosts`",
    );
    assert_refused(
        &se(|d| d["spec"]["hosts"] = json!(["*"])),
        "hostname cannot be wildcard",
    );
    assert_refused(
        &se(|d| d["spec"]["ports"][0]["number"] = 70000.into()),
        "port must be between 1-65535",
    );
    assert_refused(
        &se(|d| d["spec"]["ports"][0]["number"] = "8080".into()),
        "must be of type integer",
    );
    assert_refused(
        &se(|d| {
            d["spec"]["ports"][0]
                .as_object_mut()
                .unwrap()
                .remove("name");
        }),
        "required field `name`",
    );
    assert_refused(
        &se(|d| d["spec"]["port"] = 8080.into()),
        "spec.port: unknown field",
    );
    assert_refused(
        &se(|d| d["spec"]["addresses"] = json!(["10.0.0.0/8"])),
        "CIDR addresses",
    );

    let svc = |edit: fn(&mut Value)| broken("collector.yaml", "Service", edit);
    assert_refused(
        &svc(|d| d["spec"]["ports"][0]["port"] = 0.into()),
        "below the minimum",
    );
    assert_refused(
        &svc(|d| d["spec"]["ports"][0]["protocol"] = "HTTP".into()),
        "protocol",
    );
    assert_refused(
        &svc(|d| d["spec"]["prots"] = json!([])),
        "spec.prots: unknown field",
    );
    assert_refused(
        &svc(|d| d["kind"] = "Services".into()),
        "unexpected apiVersion/kind",
    );
}

#[test]
fn broken_plugin_configs_are_refused_by_the_filter() {
    let all = manifests();
    let pc = find(&all, "wasmplugin.yaml", "WasmPlugin")["spec"]["pluginConfig"].clone();
    let mut unknown = pc.clone();
    unknown["collector"]["flush_interval"] = 500.into();
    assert!(check_plugin_config(&unknown)
        .unwrap_err()
        .contains("flush_interval"));
    let mut wrong_type = pc.clone();
    wrong_type["collector"]["batch_size"] = "64".into();
    assert!(check_plugin_config(&wrong_type).is_err());
    let mut out_of_range = pc;
    out_of_range["sample_rate"] = 1.5.into();
    assert!(check_plugin_config(&out_of_range).is_err());
}

#[test]
fn yaml_loader_refuses_duplicate_keys_and_bad_yaml() {
    assert!(yaml_docs("a: 1\na: 2\n", "dup").is_err());
    assert!(yaml_docs("a: [1, 2\n", "unclosed").is_err());
    assert_eq!(yaml_docs("---\na: 1\n---\nb: 2\n", "two").unwrap().len(), 2);
}

#[test]
fn broken_stats_bootstraps_are_refused() {
    let all = manifests();
    let cm = find(&all, "stats-bootstrap.yaml", "ConfigMap").clone();
    let configs = envoy_stats_configs();
    let with_json = |edit: fn(&mut Value)| {
        let mut fragment: Value =
            serde_json::from_str(cm["data"][BOOTSTRAP_KEY].as_str().unwrap()).unwrap();
        edit(&mut fragment);
        let mut doc = cm.clone();
        doc["data"][BOOTSTRAP_KEY] = fragment.to_string().into();
        check_stats_bootstrap(&doc, &configs)
    };
    assert!(with_json(|_| {}).is_empty());
    assert_refused(
        &with_json(|f| {
            f["stats_config"]["histogram_bucket_settings"][2]["buckets"][10] = 700.into()
        }),
        "differs from envoy/anthropic.yaml",
    );
    assert_refused(
        &with_json(|f| {
            f["stats_config"]["stats_tags"]
                .as_array_mut()
                .unwrap()
                .pop();
        }),
        "differs from envoy/streamtap.yaml",
    );
    assert_refused(&with_json(|f| f["admin"] = json!({})), "stats_config alone");
    // A copy of the envoy configs that drifted is caught as well.
    let mut drifted = configs.clone();
    drifted[0].1["stats_tags"][0]["tag_name"] = "provider".into();
    assert_refused(
        &check_stats_bootstrap(&cm, &drifted),
        &format!("differs from envoy/{}", drifted[0].0),
    );
    let mut missing = cm.clone();
    missing["data"] = json!({"bootstrap.json": "{}"});
    assert_refused(
        &check_stats_bootstrap(&missing, &configs),
        "no data.custom_bootstrap.json",
    );
    let mut bad = cm.clone();
    bad["data"][BOOTSTRAP_KEY] = "{\"stats_config\": {".into();
    assert_refused(&check_stats_bootstrap(&bad, &configs), "is not JSON");

    let cmv = |edit: fn(&mut Value)| broken("stats-bootstrap.yaml", "ConfigMap", edit);
    assert_refused(
        &cmv(|d| d["data"]["buckets"] = 5.into()),
        "ConfigMap.data.buckets: must be of type string",
    );
    assert_refused(
        &cmv(|d| d["data"]["custom bootstrap.json"] = "{}".into()),
        "not a valid ConfigMap key",
    );
    assert_refused(
        &cmv(|d| {
            d.as_object_mut().unwrap().remove("data");
        }),
        "required field `data`",
    );
    assert_refused(
        &cmv(|d| d["spec"] = json!({})),
        "ConfigMap.spec: unknown field",
    );
    assert_refused(
        &cmv(|d| {
            d["metadata"].as_object_mut().unwrap().remove("namespace");
        }),
        "required field `namespace`",
    );
}

#[test]
fn broken_pod_annotation_patches_are_refused() {
    let all = manifests();
    let cm = find(&all, "stats-bootstrap.yaml", "ConfigMap");
    let patch = find_patch(&all, "gateway-pod-annotations.yaml").clone();
    let shape = |edit: fn(&mut Value)| {
        let mut doc = patch.clone();
        edit(&mut doc);
        validate_manifest(&[], &doc)
    };
    assert!(shape(|_| {}).is_empty());
    assert_refused(
        &shape(|d| d["spec"]["replicas"] = 3.into()),
        "patch.spec.replicas: unknown field",
    );
    assert_refused(
        &shape(|d| d["spec"]["template"]["metadata"]["annotations"]["a/b/c"] = "x".into()),
        "bad key",
    );
    assert_refused(
        &shape(|d| {
            d["spec"]["template"]["metadata"]["annotations"][BOOTSTRAP_OVERRIDE] = true.into()
        }),
        "must be of type string",
    );
    let annotations = |edit: fn(&mut Value)| {
        let mut doc = patch.clone();
        edit(&mut doc["spec"]["template"]["metadata"]["annotations"]);
        check_pod_annotations(&doc, cm)
    };
    assert!(annotations(|_| {}).is_empty());
    assert_refused(
        &annotations(|a| a[BOOTSTRAP_OVERRIDE] = "istio-custom-bootstrap-config".into()),
        "not the ConfigMap's name",
    );
    assert_refused(
        &annotations(|a| a[PROXY_CONFIG] = "proxyStatsMatcher: {}".into()),
        "is not JSON",
    );
    assert_refused(
        &annotations(|a| {
            a[PROXY_CONFIG] =
                r#"{"proxyStatsMatcher":{"inclusionPrefixes":["wasmcustom.other"]}}"#.into()
        }),
        "must keep wasmcustom.streamtap",
    );
}
