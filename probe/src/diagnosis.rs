//! One sentence on where a stream was buffered, from the verdicts at Envoy
//! (streamtap's summary from the collector) and at the client (the probe's
//! own reads, judged by the same code).

/// What the collector said about the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoySide {
    /// No `--collector` given.
    NotAsked,
    /// The collector has no summary with the probe's `x-request-id`.
    NotFound,
    /// streamtap's summary: its `stream_health.verdict` (None when it has no
    /// `stream_health`) and its `outcome`.
    Found {
        verdict: Option<String>,
        outcome: Option<String>,
    },
}

/// How the response ended at the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientEnd {
    /// The stream ended as its format says (`[DONE]`, a finish reason).
    Completed,
    /// The body ended properly but the stream never said it was done.
    NoEndMarker,
    /// The connection closed or was reset before the body's end.
    Cut,
}

/// Why the collector may have no summary of the call.
pub const NOT_FOUND_WHY: &str =
    "the call may not have been sampled (sample_rate), a proxy in front \
of Envoy may have replaced the x-request-id (an Envoy with use_remote_address: true gives requests \
from external addresses a new one unless preserve_external_request_id: true, which defaults to \
false; nginx ingress and gateways may set their own), or the collector is not the one streamtap \
exports to";

/// The diagnosis line. `client` is the client-side verdict (None: the
/// client-side summary has no `stream_health`).
pub fn diagnose(envoy: &EnvoySide, client: Option<&str>, end: ClientEnd) -> String {
    let prefix = match (end, envoy) {
        (ClientEnd::Completed, _) => String::new(),
        (ClientEnd::Cut, EnvoySide::Found { outcome: Some(outcome), .. }) if outcome == "completed" => {
            "the connection closed before the response ended, while Envoy saw it complete: \
             something between Envoy and you cut it (a proxy's or load balancer's idle or response timeout); "
                .to_string()
        }
        (ClientEnd::Cut, EnvoySide::Found { outcome: Some(outcome), .. }) => format!(
            "the connection closed before the response ended; Envoy saw the call end as {outcome}; "
        ),
        (ClientEnd::Cut, _) => "the connection closed before the response ended; ".to_string(),
        (ClientEnd::NoEndMarker, _) => {
            "the stream ended without saying it was done (no [DONE], no finish reason); ".to_string()
        }
    };
    let Some(client) = client else {
        return format!(
            "{prefix}the client-side summary has no stream_health: the core did not read the \
             response as an event stream"
        );
    };
    if client == "too_short" {
        return format!("{prefix}answer too short to judge: ask for a longer answer with --prompt");
    }
    let body = match envoy {
        EnvoySide::NotAsked => match client {
            "smooth" => "smooth at the client".to_string(),
            _ => format!(
                "{client} at the client; run again with --collector to see whether it was already \
                 {client} at Envoy"
            ),
        },
        EnvoySide::NotFound => format!(
            "{client} at the client; the collector has no summary of this call: {NOT_FOUND_WHY}"
        ),
        EnvoySide::Found { verdict: None, .. } => format!(
            "{client} at the client; Envoy's summary has no stream_health (a streamtap older than \
             summary schema_version 2, or the response was not an event stream at Envoy)"
        ),
        EnvoySide::Found {
            verdict: Some(envoy),
            ..
        } => both_sides(envoy, client),
    };
    format!("{prefix}{body}")
}

fn is_lumpy(verdict: &str) -> bool {
    matches!(verdict, "buffered" | "bursty")
}

fn both_sides(envoy: &str, client: &str) -> String {
    match (envoy, client) {
        ("smooth", "smooth") => "smooth at Envoy and at the client".to_string(),
        ("smooth", c) if is_lumpy(c) => format!(
            "smooth at Envoy, {c} at the client: something between Envoy and you buffers \
             (nginx proxy_buffering or gzip, a CDN, a compressor)"
        ),
        ("smooth", "stalled") => "smooth at Envoy, stalled at the client: something between Envoy \
             and you held the stream back for a while (a proxy's buffer, a congested link)"
            .to_string(),
        (e, c) if is_lumpy(e) && (is_lumpy(c) || c == "stalled") => format!(
            "already {e} when it reached Envoy: look upstream (the model server or a proxy before Envoy)"
        ),
        (e, "smooth") if is_lumpy(e) => format!(
            "{e} at Envoy but smooth at the client: the unevenness came from upstream (the model \
             server or a proxy before Envoy) and was small enough to even out on the way"
        ),
        ("stalled", "stalled") => "stalled already at Envoy: the upstream paused mid-stream; look \
             at the model server (load, queueing) or a proxy before Envoy"
            .to_string(),
        ("stalled", c) => format!(
            "stalled at Envoy, {c} at the client: the upstream paused mid-stream (look at the model \
             server or a proxy before Envoy); what is between Envoy and you changed its shape"
        ),
        ("too_short", c) => format!(
            "{c} at the client, but too short to judge at Envoy: Envoy saw fewer deltas than the \
             client did, so the two summaries may not be of the same call"
        ),
        (e, c) => format!("{e} at Envoy, {c} at the client"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(verdict: &str) -> EnvoySide {
        EnvoySide::Found {
            verdict: Some(verdict.to_string()),
            outcome: Some("completed".to_string()),
        }
    }

    fn says(envoy: &EnvoySide, client: &str) -> String {
        diagnose(envoy, Some(client), ClientEnd::Completed)
    }

    #[test]
    fn table() {
        assert_eq!(
            says(&found("smooth"), "smooth"),
            "smooth at Envoy and at the client"
        );
        for client in ["buffered", "bursty"] {
            let got = says(&found("smooth"), client);
            assert!(got.starts_with(&format!("smooth at Envoy, {client} at the client: something between Envoy and you buffers")), "{got}");
            assert!(got.contains("proxy_buffering"), "{got}");
        }
        for envoy in ["buffered", "bursty"] {
            for client in ["buffered", "bursty", "stalled"] {
                let got = says(&found(envoy), client);
                assert!(
                    got.starts_with(&format!(
                        "already {envoy} when it reached Envoy: look upstream"
                    )),
                    "{envoy} {client}: {got}"
                );
            }
            assert!(says(&found(envoy), "smooth")
                .starts_with(&format!("{envoy} at Envoy but smooth at the client")));
        }
        assert!(
            says(&found("smooth"), "stalled").starts_with("smooth at Envoy, stalled at the client")
        );
        assert!(says(&found("stalled"), "stalled").starts_with("stalled already at Envoy"));
        assert!(
            says(&found("stalled"), "smooth").starts_with("stalled at Envoy, smooth at the client")
        );
        assert!(says(&found("too_short"), "smooth").contains("too short to judge at Envoy"));
    }

    #[test]
    fn too_short_missing_and_unasked() {
        for envoy in [EnvoySide::NotAsked, EnvoySide::NotFound, found("smooth")] {
            assert_eq!(
                says(&envoy, "too_short"),
                "answer too short to judge: ask for a longer answer with --prompt"
            );
        }
        assert_eq!(says(&EnvoySide::NotAsked, "smooth"), "smooth at the client");
        assert!(says(&EnvoySide::NotAsked, "buffered").contains("run again with --collector"));

        let got = says(&EnvoySide::NotFound, "smooth");
        assert!(
            got.starts_with("smooth at the client; the collector has no summary of this call"),
            "{got}"
        );
        for cause in [
            "sample_rate",
            "x-request-id",
            "preserve_external_request_id",
            "use_remote_address",
            "not the one streamtap exports to",
        ] {
            assert!(got.contains(cause), "{cause}: {got}");
        }
        let no_health = EnvoySide::Found {
            verdict: None,
            outcome: None,
        };
        assert!(says(&no_health, "smooth").contains("Envoy's summary has no stream_health"));
        assert!(diagnose(&found("smooth"), None, ClientEnd::Completed).contains("no stream_health"));
    }

    #[test]
    fn the_end_comes_first() {
        let got = diagnose(&found("smooth"), Some("smooth"), ClientEnd::Cut);
        assert!(
            got.starts_with(
                "the connection closed before the response ended, while Envoy saw it complete"
            ),
            "{got}"
        );
        assert!(got.ends_with("smooth at Envoy and at the client"), "{got}");
        let reset = EnvoySide::Found {
            verdict: Some("smooth".into()),
            outcome: Some("upstream_reset".into()),
        };
        assert!(diagnose(&reset, Some("smooth"), ClientEnd::Cut)
            .contains("Envoy saw the call end as upstream_reset"));
        assert!(diagnose(
            &EnvoySide::NotAsked,
            Some("too_short"),
            ClientEnd::NoEndMarker
        )
        .starts_with("the stream ended without saying it was done"));
    }
}
