//! streamtap's summary of the probe's call, from the collector's
//! `GET /calls?id=<x-request-id>`.

use std::time::{Duration, Instant};

use serde_json::Value;
use testbed::client;

use crate::url::HttpUrl;

/// The filter exports in batches (`flush_interval_ms`): ask again this often.
const POLL_EVERY: Duration = Duration::from_millis(200);

/// The newest summary whose `id` is one of `ids`, asking until `wait` has
/// passed; `Ok(None)` when there is none by then. A collector that cannot
/// be reached, or answers anything but a 200 with `{"calls":[...]}`, is an
/// error.
pub fn find_call(
    collector: &HttpUrl,
    ids: &[String],
    wait: Duration,
) -> Result<Option<Value>, String> {
    let addr = collector.resolve("--collector")?;
    let deadline = Instant::now() + wait;
    loop {
        for id in ids {
            let path = format!("/calls?id={}", percent_encode(id));
            let (status, body) = client::get(addr, &path).map_err(|err| {
                format!("collector {collector}: cannot ask it for the call: {err}")
            })?;
            if status != 200 {
                return Err(format!(
                    "collector {collector}: GET /calls?id=… answered {status}: {}",
                    crate::first_bytes(body.as_bytes())
                ));
            }
            let answer: Value = serde_json::from_str(&body).map_err(|err| {
                format!("collector {collector}: GET /calls did not answer JSON ({err}): is this streamtap's collector?")
            })?;
            let calls = answer["calls"].as_array().ok_or_else(|| {
                format!("collector {collector}: GET /calls has no \"calls\" array: is this streamtap's collector?")
            })?;
            // An older collector ignores `id=`: check the id here too.
            if let Some(call) = calls
                .iter()
                .rev()
                .find(|call| call["id"].as_str() == Some(id))
            {
                return Ok(Some(call.clone()));
            }
        }
        if Instant::now() + POLL_EVERY > deadline {
            return Ok(None);
        }
        std::thread::sleep(POLL_EVERY);
    }
}

/// Everything but RFC 3986 unreserved characters as `%XX`.
pub fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use testbed::collector::Collector;

    #[test]
    fn finds_the_call_once_it_arrives_and_none_after_the_wait() {
        let collector = Collector::start().unwrap();
        let url =
            HttpUrl::parse_base(&format!("http://{}", collector.addr), "--collector").unwrap();
        let ids = ["probe-a b".to_string()];
        assert_eq!(find_call(&url, &ids, Duration::from_millis(300)), Ok(None));

        let addr = collector.addr;
        let poster = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            let body =
                json!([{"id": "other"}, {"id": "probe-a b", "outcome": "completed"}]).to_string();
            client::post(addr, "/v1/calls", &[], body.as_bytes()).unwrap();
        });
        let found = find_call(&url, &ids, Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert_eq!(found["outcome"], "completed");
        poster.join().unwrap();
    }

    #[test]
    fn an_unreachable_collector_is_an_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = HttpUrl::parse_base(&format!("http://127.0.0.1:{port}"), "--collector").unwrap();
        let err = find_call(&url, &["x".to_string()], Duration::from_secs(1)).unwrap_err();
        assert!(
            err.starts_with(&format!("collector http://127.0.0.1:{port}/: cannot ask")),
            "{err}"
        );
    }

    #[test]
    fn encodes_ids() {
        assert_eq!(
            percent_encode("streamtap-probe-0a9f"),
            "streamtap-probe-0a9f"
        );
        assert_eq!(percent_encode("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
    }
}
