//! The streaming scan against the whole-body pull reader it replaced (kept
//! here as the oracle), at every split, on generated bodies and on large images.

use super::*;
use crate::wire::json::Json;
use crate::ParseError;
use proptest::prelude::*;

// The oracle: `RequestFields::read` and `feed_prompt` as they were
// before the scan (the whole body parsed with the pull reader).
fn oracle_read(body: &[u8]) -> Result<RequestFields, ParseError> {
    let mut fields = RequestFields::default();
    Json::parse(body, |j| {
        j.object(|key, j| match key {
            b"model" => {
                fields.model = j.opt_str()?.map(|m| m.into_owned());
                Ok(())
            }
            b"stream" => {
                fields.stream = j.opt_bool()?;
                Ok(())
            }
            b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens" => {
                j.update_u64(&mut fields.max_tokens)
            }
            b"tools" => {
                let mut count = 0;
                j.opt_array(|_, j| {
                    count += 1;
                    j.skip()
                })?;
                fields.tools = Some(count);
                Ok(())
            }
            b"messages" | b"contents" => {
                let mut count = 0;
                j.opt_array(|_, j| {
                    count += 1;
                    oracle_feed_prompt(j, &mut fields.prompt)
                })?;
                fields.messages = Some(count);
                Ok(())
            }
            b"input" => {
                let mut count = 1;
                if j.peek_array() {
                    count = 0;
                    j.array(|_, j| {
                        count += 1;
                        oracle_feed_prompt(j, &mut fields.prompt)
                    })?;
                } else {
                    oracle_feed_prompt(j, &mut fields.prompt)?;
                }
                fields.messages = fields.messages.or(Some(count));
                Ok(())
            }
            b"system" | b"instructions" | b"prompt" | b"systemInstruction" => {
                oracle_feed_prompt(j, &mut fields.prompt)
            }
            _ => j.skip(),
        })
    })?;
    Ok(fields)
}

fn oracle_feed_prompt(j: &mut Json<'_>, estimator: &mut TokenEstimator) -> Result<(), ParseError> {
    if j.peek_array() {
        return j.array(|_, j| oracle_feed_prompt(j, estimator));
    }
    if j.peek_object() {
        return j.object(|key, j| match key {
            b"content" | b"text" | b"input" => oracle_feed_prompt(j, estimator),
            _ => j.skip(),
        });
    }
    if j.peek_string() {
        estimator.feed(&j.str()?);
        return Ok(());
    }
    j.skip()
}

type Facts = (
    Option<String>,
    Option<bool>,
    Option<u64>,
    Option<u64>,
    Option<u64>,
    u64,
    u64,
);

fn facts(fields: &RequestFields) -> Facts {
    (
        fields.model.clone(),
        fields.stream,
        fields.max_tokens,
        fields.tools,
        fields.messages,
        fields.prompt.tokens(),
        fields.estimated_input_tokens(),
    )
}

fn scan(body: &[u8], cuts: &[usize]) -> Option<Facts> {
    let mut scan = RequestScan::new();
    let mut at = 0;
    for &cut in cuts {
        let cut = cut.clamp(at, body.len());
        scan.feed(&body[at..cut]);
        at = cut;
    }
    scan.feed(&body[at..]);
    scan.finish().as_ref().map(facts)
}

fn oracle(body: &[u8]) -> Option<Facts> {
    oracle_read(body).ok().as_ref().map(facts)
}

fn every_split_agrees(body: &[u8]) {
    let want = oracle(body);
    let show = || {
        String::from_utf8_lossy(body)
            .chars()
            .take(300)
            .collect::<String>()
    };
    assert_eq!(scan(body, &[]), want, "{}", show());
    for cut in 0..=body.len() {
        assert_eq!(scan(body, &[cut]), want, "cut {cut}: {}", show());
    }
    let ones: Vec<usize> = (0..=body.len()).collect();
    assert_eq!(scan(body, &ones), want, "bytewise: {}", show());
}

#[test]
fn every_fixture_request_at_every_split() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut seen = 0;
    for dir in std::fs::read_dir(root).unwrap() {
        let path = dir.unwrap().path().join("request.json");
        if let Ok(body) = std::fs::read(&path) {
            let want = oracle(&body);
            assert!(want.is_some(), "{}", path.display());
            every_split_agrees(&body);
            seen += 1;
        }
    }
    assert!(seen >= 3, "fixtures found: {seen}");
}

const BODIES: &[&str] = &[
    // The tap's unit-test bodies.
    r#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#,
    r#"{"model":"m"}"#,
    r#"{"model":"m","api_key":"sk-live-123","metadata":{"Password":"hunter2","session_id":"s-9","n":1},"messages":[{"role":"user","content":"hi"}]}"#,
    "api_key=sk-live-123&not=json",
    // Spellings, duplicates, nulls: last wins, null keeps a limit.
    r#"{"max_tokens":5,"max_completion_tokens":null}"#,
    r#"{"max_tokens":5,"max_output_tokens":7,"max_tokens":null}"#,
    r#"{"model":"a","model":null}"#,
    r#"{"model":null,"model":"b","stream":false,"stream":null}"#,
    r#"{"tools":[{"a":[1,2]},2,"x",null],"tools":null}"#,
    r#"{"messages":null}"#,
    r#"{"messages":[{"content":"x"}],"messages":[]}"#,
    // `messages` wins over `input`, in either order.
    r#"{"input":"hello there","messages":[{"content":"a b"}]}"#,
    r#"{"messages":[{"content":"a b"}],"input":[1,2,3]}"#,
    r#"{"input":[{"role":"user","content":[{"type":"input_text","text":"Hi!"}]},"two"],"input":"x"}"#,
    r#"{"input":null}"#,
    r#"{"input":{"content":"deep","other":"no","input":{"text":"yes"}}}"#,
    r#"{"input":42,"instructions":["a",{"text":"b"},[["c"]]]}"#,
    r#"{"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],"messages":[{"role":"user","content":[{"type":"text","text":"x"},{"type":"tool_result","content":[{"type":"text","text":"nested"}]}]}]}"#,
    r#"{"messages":[{"role":"assistant","content":null,"tool_calls":[{"function":{"arguments":"{\"a\":1}"}}]},{"content":{"text":{"content":"obj"}}}]}"#,
    // Escapes, in keys too.
    r#"{"\u006dodel":"caf\u00e9 \ud83d\ude00","messages":[{"\u0063ontent":"a\nb\t\"c\""}]}"#,
    "{\"model\":\"日本語\",\"messages\":[{\"content\":\"こんにちは 世界 café\"}]}",
    // Estimator runs continue across strings, in order.
    r#"{"system":"abc","messages":[{"content":"def"},{"content":["12","34"]}],"instructions":"!!"}"#,
    // Nested keys are not facts.
    r#"{"metadata":{"model":"no","stream":true,"max_tokens":9,"messages":[1]}}"#,
    r#"{"a":{"b":[{"c":{"model":"x"}}]},"model":"y"}"#,
    // No facts: wrong types, not an object, truncated, trailing content.
    r#"{"model":5}"#,
    r#"{"model":["a"]}"#,
    r#"{"stream":"yes"}"#,
    r#"{"stream":1}"#,
    r#"{"max_tokens":1.5}"#,
    r#"{"max_tokens":-1}"#,
    r#"{"max_tokens":1e3}"#,
    r#"{"max_tokens":18446744073709551615}"#,
    r#"{"max_tokens":18446744073709551616}"#,
    r#"{"max_tokens":"10"}"#,
    r#"{"tools":{}}"#,
    r#"{"tools":"x"}"#,
    r#"{"messages":{"content":"x"}}"#,
    r#"{"messages":"x"}"#,
    r#"{"messages":[{"content":"\ud800"}]}"#,
    r#"["model","m"]"#,
    r#""model""#,
    "null",
    "",
    "   ",
    r#"{"model":"m","messages":[{"content":"x"}]"#,
    r#"{"model":"m"} {}"#,
    r#"{"model":"m",}"#,
    "{\"model\":\"m\"}\n",
    r#" { "model" : "m" , "stream" : true } "#,
];

#[test]
fn every_unit_body_at_every_split() {
    for body in BODIES {
        every_split_agrees(body.as_bytes());
    }
}

#[test]
fn a_long_model_is_cut_at_a_character() {
    let model = "é".repeat(200);
    let body = format!(r#"{{"model":"{model}"}}"#);
    let got = scan(body.as_bytes(), &[3, 100]).unwrap().0.unwrap();
    assert_eq!(got.len(), MAX_MODEL_BYTES);
    assert!(model.starts_with(&got));
}

/// A base64 payload of `n` bytes (real alphabet, `=` padded).
fn base64(n: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out: String = (0..n - 2)
        .map(|i| ALPHABET[(i * 7919 + i / 64) % 64] as char)
        .collect();
    out.push_str("==");
    out
}

const IMAGE: usize = 3 << 20;

/// The three APIs' image requests, with the image and without it.
fn image_requests() -> Vec<(&'static str, String, String)> {
    let data = base64(IMAGE);
    let chat = |image: &str| {
        format!(
            r#"{{"model":"gpt-4o","max_tokens":300,"stream":true,"messages":[{{"role":"system","content":"You describe images."}},{{"role":"user","content":[{{"type":"text","text":"What is in this image?"}}{image}]}}]}}"#
        )
    };
    let anthropic = |image: &str| {
        format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":1024,"system":"You describe images.","messages":[{{"role":"user","content":[{image}{{"type":"text","text":"What is in this image?"}}]}}]}}"#
        )
    };
    let responses = |image: &str| {
        format!(
            r#"{{"model":"gpt-4.1","max_output_tokens":500,"instructions":"You describe images.","input":[{{"role":"user","content":[{{"type":"input_text","text":"What is in this image?"}}{image}]}}]}}"#
        )
    };
    vec![
        (
            "openai chat",
            chat(&format!(
                r#",{{"type":"image_url","image_url":{{"url":"data:image/png;base64,{data}","detail":"high"}}}}"#
            )),
            chat(""),
        ),
        (
            "anthropic",
            anthropic(&format!(
                r#"{{"type":"image","source":{{"type":"base64","media_type":"image/jpeg","data":"{data}"}}}},"#
            )),
            anthropic(""),
        ),
        (
            "responses",
            responses(&format!(
                r#",{{"type":"input_image","image_url":"data:image/png;base64,{data}"}}"#
            )),
            responses(""),
        ),
    ]
}

#[test]
fn a_3_mb_base64_image_does_not_lose_facts_or_count_as_prompt() {
    for (api, with, without) in image_requests() {
        assert!(with.len() > IMAGE, "{api}");
        let mut scan = RequestScan::new();
        let mut heap = 0;
        // Envoy hands bodies over in chunks of about 16 KiB.
        for chunk in with.as_bytes().chunks(16 * 1024 + 7) {
            scan.feed(chunk);
            heap = heap.max(scan.heap_bytes());
        }
        assert!(heap <= MAX_MODEL_BYTES, "{api}: {heap} heap bytes");
        let got = scan.finish().as_ref().map(facts).expect(api);
        assert!(
            got.0.is_some() && got.2.is_some() && got.4.is_some(),
            "{api}: {got:?}"
        );
        assert_eq!(Some(&got), oracle(with.as_bytes()).as_ref(), "{api}");
        let plain = scan_whole(without.as_bytes());
        assert_eq!(got.5, plain.5, "{api}: the image counted as prompt");
        assert_eq!(got, plain, "{api}");
    }
}

fn scan_whole(body: &[u8]) -> Facts {
    scan(body, &[]).unwrap()
}

#[test]
fn heap_use_does_not_grow_with_the_body() {
    let small = br#"{"model":"m","messages":[{"content":"x"}]}"#;
    let mut scan = RequestScan::new();
    scan.feed(small);
    let small_heap = scan.heap_bytes();
    let text = "word ".repeat(1 << 20);
    let big = format!(r#"{{"model":"m","messages":[{{"content":"{text}"}}]}}"#);
    let mut scan = RequestScan::new();
    for chunk in big.as_bytes().chunks(65_536) {
        scan.feed(chunk);
        assert_eq!(scan.heap_bytes(), small_heap);
    }
    assert_eq!(scan.finish().unwrap().prompt.tokens(), 1 << 20);
    // Everything else is inline, of a fixed size.
    assert!(std::mem::size_of::<RequestScan>() < 512);
}

/// Request-like JSON: known keys at the top and inside, any order,
/// duplicates, any types (so wrong types too), escaped keys.
fn arb_value() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        "[a-z ,.!0-9\n]{0,30}",
        any::<String>(),
        "[\u{e9}\u{65e5}\u{1f600}\"\\\\/\t a]{0,10}",
    ];
    let leaf = prop_oneof![
        Just("null".to_string()),
        any::<bool>().prop_map(|b| b.to_string()),
        any::<u64>().prop_map(|n| n.to_string()),
        any::<i32>().prop_map(|n| n.to_string()),
        Just("1.5".to_string()),
        Just("1e3".to_string()),
        text.prop_map(|t| serde_json::to_string(&t).unwrap()),
    ];
    leaf.prop_recursive(5, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((arb_key(), inner), 0..6).prop_map(|fields| object(&fields)),
        ]
    })
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "model",
            "stream",
            "max_tokens",
            "max_completion_tokens",
            "max_output_tokens",
            "tools",
            "messages",
            "input",
            "system",
            "instructions",
            "prompt",
            "contents",
            "systemInstruction",
            "content",
            "text",
            "role",
            "type",
            "image_url",
            "source",
            "data",
        ])
        .prop_map(|k| serde_json::to_string(k).unwrap()),
        Just(r#""\u0063ontent""#.to_string()),
        Just(r#""\u006dodel""#.to_string()),
        "[a-z]{0,8}".prop_map(|k| serde_json::to_string(&k).unwrap()),
    ]
}

fn object(fields: &[(String, String)]) -> String {
    let fields: Vec<String> = fields.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    format!("{{{}}}", fields.join(","))
}

/// Top-level fields of the right types, mostly.
fn arb_field() -> impl Strategy<Value = (String, String)> {
    let string = "[a-z0-9 .-]{0,20}".prop_map(|t| serde_json::to_string(&t).unwrap());
    let message = (arb_value(), arb_value()).prop_map(|(content, extra)| {
        format!(r#"{{"role":"user","content":{content},"name":{extra}}}"#)
    });
    let list = |item: BoxedStrategy<String>| {
        prop::collection::vec(item, 0..5).prop_map(|items| format!("[{}]", items.join(",")))
    };
    prop_oneof![
        3 => string.clone().prop_map(|v| (r#""model""#.to_string(), v)),
        1 => any::<bool>().prop_map(|b| (r#""stream""#.to_string(), b.to_string())),
        2 => (prop::sample::select(vec!["max_tokens", "max_completion_tokens", "max_output_tokens"]), prop_oneof![any::<u32>().prop_map(|n| n.to_string()), Just("null".to_string())])
            .prop_map(|(k, n)| (format!("\"{k}\""), n)),
        2 => list(arb_value().boxed()).prop_map(|v| (r#""tools""#.to_string(), v)),
        3 => list(message.boxed()).prop_map(|v| (r#""messages""#.to_string(), v)),
        2 => prop_oneof![string.clone(), list(arb_value().boxed())].prop_map(|v| (r#""input""#.to_string(), v)),
        2 => arb_value().prop_map(|v| (r#""system""#.to_string(), v)),
        2 => (arb_key(), arb_value()),
    ]
}

proptest! {
    #[test]
    fn generated_requests_split_anywhere(
        fields in prop::collection::vec(arb_field(), 0..8),
        pad in any::<bool>(),
        cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..10),
    ) {
        let mut body = object(&fields);
        if pad {
            body = format!(" \n{body}\t ");
        }
        let body = body.as_bytes();
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(body.len() + 1)).collect();
        cuts.sort_unstable();
        let want = oracle(body);
        prop_assert_eq!(scan(body, &cuts), want, "{}", String::from_utf8_lossy(body));
    }
}

/// Native cost of the scan per MiB of body (prints; asserts nothing):
/// `cargo test -p streamtap --lib --release scan_cost -- --ignored --nocapture`
#[test]
#[ignore]
fn scan_cost_per_mib() {
    let text = "The quick brown fox jumps over the lazy dog, 12345 times! ".repeat(60_000);
    let prose = format!(r#"{{"model":"m","messages":[{{"role":"user","content":"{text}"}}]}}"#);
    let mut bodies = vec![("prose (all estimated)", prose)];
    for (api, with, _) in image_requests() {
        bodies.push((api, with));
    }
    for (name, body) in bodies {
        let rounds = 20;
        let start = std::time::Instant::now();
        for _ in 0..rounds {
            let mut scan = RequestScan::new();
            for chunk in body.as_bytes().chunks(16 * 1024) {
                scan.feed(chunk);
            }
            assert!(scan.finish().is_some());
        }
        let mib = (body.len() * rounds) as f64 / f64::from(1 << 20);
        let per_mib = start.elapsed().as_secs_f64() * 1e3 / mib;
        let old = std::time::Instant::now();
        for _ in 0..rounds {
            assert!(oracle_read(body.as_bytes()).is_ok());
        }
        let old_per_mib = old.elapsed().as_secs_f64() * 1e3 / mib;
        println!("{name}: scan {per_mib:.3} ms/MiB, pull reader on the whole body {old_per_mib:.3} ms/MiB");
    }
}
