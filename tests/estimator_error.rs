//! How far streamtap's token estimate (used when a provider reports no usage)
//! is from real tokenizer counts: OpenAI's o200k_base and cl100k_base, on the
//! texts of the wire-format fixtures and a few samples of other kinds of text.
//! Prints the table the README quotes; fails if the error grows past its bound.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use streamtap::call::estimate::estimate;

/// Answer texts assembled from the fixtures (content, reasoning, tool arguments).
fn fixture_texts() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut out = Vec::new();
    for dir in [
        "openai-chat",
        "openai-responses",
        "anthropic",
        "ollama-chat",
        "ollama-generate",
        "gemini",
        "gemini-array",
        "gemini-generate",
        "vertex-gemini",
        "bedrock-converse",
        "bedrock-invoke",
    ] {
        let mut paths: Vec<_> = std::fs::read_dir(root.join(dir))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for path in paths {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if !name.ends_with(".expected.json") {
                continue;
            }
            let summary: serde_json::Value =
                serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            let mut text = String::new();
            for key in ["reasoning", "content"] {
                text.push_str(summary[key].as_str().unwrap_or_default());
            }
            for call in summary["tool_calls"].as_array().unwrap() {
                text.push_str(call["name"].as_str().unwrap());
                text.push_str(call["arguments"].as_str().unwrap());
            }
            if text.len() >= 20 {
                out.push((
                    format!("{dir}/{}", name.trim_end_matches(".expected.json")),
                    text,
                ));
            }
        }
    }
    out
}

fn samples() -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = [
        ("sample/prose", "The proxy forwards every chunk as soon as it arrives. Observability tools that buffer responses make streaming interfaces feel broken, because users wait for the whole answer and then receive it at once."),
        ("sample/code", "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n"),
        ("sample/json", "{\"location\": \"San Francisco, CA\", \"unit\": \"celsius\", \"days\": 3, \"include_hourly\": false}"),
        ("sample/numbers", "Revenue grew from $1,234,567 in 2023 to $2,345,678 in 2024, an increase of 90.01%."),
        ("sample/markdown", "## Steps\n\n1. Build the filter with `make build`.\n2. Load `dist/streamtap.wasm` in Envoy.\n3. Watch `/stats` for `wasmcustom.streamtap.calls`.\n"),
        ("sample/german", "Die Antwort wird Wort für Wort übertragen, damit der Benutzer nicht auf eine Textwand warten muss."),
        ("sample/chinese", "流式响应可以让用户更快地看到第一个词，而不是等待整段文字。"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    v.extend(fixture_texts());
    v
}

#[test]
fn estimator_error_against_real_tokenizers() {
    let o200k = tiktoken_rs::o200k_base().unwrap();
    let cl100k = tiktoken_rs::cl100k_base().unwrap();
    let mut errors = Vec::new();
    println!(
        "{:<40} {:>6} {:>6} {:>9} {:>7}",
        "text", "o200k", "cl100k", "estimate", "error"
    );
    for (name, text) in samples() {
        let real = o200k.encode_with_special_tokens(&text).len() as f64;
        let real_cl = cl100k.encode_with_special_tokens(&text).len() as f64;
        let est = estimate(&text) as f64;
        let error = (est - real) / real;
        println!(
            "{name:<40} {real:>6} {real_cl:>6} {est:>9} {:>+6.0}%",
            error * 100.0
        );
        errors.push((name, error));
    }
    let mean_abs = errors.iter().map(|(_, e)| e.abs()).sum::<f64>() / errors.len() as f64;
    let worst = errors.iter().map(|(_, e)| e.abs()).fold(0.0, f64::max);
    println!(
        "mean absolute error vs o200k: {:.1}%, worst {:.1}%",
        mean_abs * 100.0,
        worst * 100.0
    );
    assert!(
        mean_abs <= 0.20,
        "estimator drifted: mean |error| {mean_abs:.3}"
    );
    assert!(
        worst <= 0.50,
        "estimator drifted: worst |error| {worst:.3} in {errors:?}"
    );
}
