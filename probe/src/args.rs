//! The command line. Header values never appear in an error message: they
//! can be credentials (`Authorization: Bearer …`).

use crate::url::HttpUrl;
use std::time::Duration;

pub const USAGE: &str = "usage: streamtap-probe URL [--model M] [--header 'Name: value']... \
[--collector URL] [--prompt TEXT] [--json] [--timeout-s N]
  URL            http://host:port/path of your chat completions endpoint (your ingress,
                 gateway, or Envoy itself); http only
  --model M      the request's model (default gpt-4o-mini)
  --header H     an extra request header, e.g. 'Authorization: Bearer ...' (sent, never shown)
  --collector U  streamtap's collector, e.g. http://127.0.0.1:18082: compare with Envoy's view
  --prompt TEXT  the user message (default: a counting task with a long, steady answer)
  --json         print one JSON object instead of lines of text
  --timeout-s N  give up after N seconds (default 120)";

pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
pub const DEFAULT_PROMPT: &str =
    "Count from one to eighty in words, one number per line, with nothing else.";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Headers the probe writes itself.
const OWN_HEADERS: [&str; 4] = [
    "content-length",
    "transfer-encoding",
    "content-type",
    "connection",
];

#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub url: HttpUrl,
    pub model: String,
    /// As given; shown nowhere.
    pub headers: Vec<(String, String)>,
    pub collector: Option<HttpUrl>,
    pub prompt: String,
    pub json: bool,
    pub timeout: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Run(Box<Args>),
    Help,
}

/// Parses the arguments after the program name.
pub fn parse(args: &[String]) -> Result<Command, String> {
    let mut url = None;
    let mut model = None;
    let mut headers = Vec::new();
    let mut collector = None;
    let mut prompt = None;
    let mut json = false;
    let mut timeout = DEFAULT_TIMEOUT;

    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => (flag, Some(value.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = |name: &str| -> Result<String, String> {
            match inline.clone() {
                Some(value) => Ok(value),
                None => rest
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{name} needs a value")),
            }
        };
        match flag {
            "-h" | "--help" => return Ok(Command::Help),
            "--json" if inline.is_none() => json = true,
            "--model" => model = Some(non_empty("--model", value("--model")?)?),
            "--prompt" => prompt = Some(non_empty("--prompt", value("--prompt")?)?),
            "--header" | "-H" => {
                let number = headers.len() + 1;
                headers.push(parse_header(&value("--header")?, number)?);
            }
            "--collector" => {
                collector = Some(HttpUrl::parse_base(&value("--collector")?, "--collector")?);
            }
            "--timeout-s" => {
                let text = value("--timeout-s")?;
                let seconds: f64 = text
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0 && *s <= 3600.0)
                    .ok_or_else(|| {
                        format!("--timeout-s: {text:?} is not a number of seconds in (0, 3600]")
                    })?;
                timeout = Duration::from_secs_f64(seconds);
            }
            other if other.starts_with('-') => {
                return Err(format!("unknown option {other:?} (--help lists them)"))
            }
            _ if url.is_some() => {
                return Err(
                    "more than one URL given (the first argument that is not an option is the URL)"
                        .to_string(),
                )
            }
            _ => url = Some(HttpUrl::parse(arg, "URL")?),
        }
    }
    let url = url.ok_or_else(|| "no URL given".to_string())?;
    Ok(Command::Run(Box::new(Args {
        url,
        model: model.unwrap_or_else(|| DEFAULT_MODEL.to_string()),
        headers,
        collector,
        prompt: prompt.unwrap_or_else(|| DEFAULT_PROMPT.to_string()),
        json,
        timeout,
    })))
}

fn non_empty(name: &str, value: String) -> Result<String, String> {
    if value.is_empty() {
        Err(format!("{name} is empty"))
    } else {
        Ok(value)
    }
}

/// `Name: value`. The errors name the header by its position and, once it
/// is known to be a valid name, by its name; never by its value.
fn parse_header(text: &str, number: usize) -> Result<(String, String), String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!(
            "--header #{number}: expected 'Name: value' (no ':' found; the text is not shown)"
        ));
    };
    let name = name.trim();
    if name.is_empty() || !name.bytes().all(is_token_byte) {
        return Err(format!(
            "--header #{number}: the part before ':' is not a header name (the text is not shown)"
        ));
    }
    if OWN_HEADERS.iter().any(|own| own.eq_ignore_ascii_case(name)) {
        return Err(format!(
            "--header {name}: the probe sets this header itself"
        ));
    }
    let value = value.trim();
    if value.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(format!(
            "--header {name}: the value has a line break or NUL (the value is not shown)"
        ));
    }
    Ok((name.to_string(), value.to_string()))
}

/// RFC 9110 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<Args, String> {
        let owned: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        match parse(&owned)? {
            Command::Run(args) => Ok(*args),
            Command::Help => Err("help".to_string()),
        }
    }

    #[test]
    fn defaults_and_every_option() {
        let got = args(&["http://127.0.0.1:10000/v1/chat/completions"]).unwrap();
        assert_eq!(got.model, DEFAULT_MODEL);
        assert_eq!(got.prompt, DEFAULT_PROMPT);
        assert_eq!(
            (got.json, got.timeout, got.collector.clone()),
            (false, DEFAULT_TIMEOUT, None)
        );
        assert!(got.headers.is_empty());

        let got = args(&[
            "--model",
            "llama-3",
            "http://gw:8080/v1/chat/completions",
            "--header",
            "Authorization: Bearer sk-secret",
            "-H",
            "x-tenant:blue",
            "--collector=http://127.0.0.1:18082",
            "--prompt",
            "say hi",
            "--json",
            "--timeout-s",
            "2.5",
        ])
        .unwrap();
        assert_eq!(got.url.authority(), "gw:8080");
        assert_eq!(got.model, "llama-3");
        assert_eq!(
            got.headers,
            [
                ("Authorization".to_string(), "Bearer sk-secret".to_string()),
                ("x-tenant".to_string(), "blue".to_string())
            ]
        );
        assert_eq!(got.collector.unwrap().port, 18082);
        assert_eq!(got.prompt, "say hi");
        assert!(got.json);
        assert_eq!(got.timeout, Duration::from_millis(2500));
        assert_eq!(parse(&["--help".to_string()]), Ok(Command::Help));
    }

    #[test]
    fn bad_arguments_say_what_is_wrong() {
        let cases: &[(&[&str], &str)] = &[
            (&[], "no URL given"),
            (&["--json"], "no URL given"),
            (&["http://a/", "http://b/"], "more than one URL"),
            (&["http://a/", "--model"], "--model needs a value"),
            (&["http://a/", "--model", ""], "--model is empty"),
            (&["http://a/", "--verbose"], "unknown option \"--verbose\""),
            (
                &["http://a/", "--timeout-s", "soon"],
                "--timeout-s: \"soon\" is not a number",
            ),
            (&["http://a/", "--timeout-s", "0"], "--timeout-s"),
            (&["https://a/"], "https is not supported yet"),
            (
                &["http://a/", "--collector", "https://c/"],
                "--collector: https is not supported",
            ),
            (
                &["http://a/", "--header", "content-length: 5"],
                "sets this header itself",
            ),
        ];
        for (list, expected) in cases {
            let err = args(list).unwrap_err();
            assert!(
                err.contains(expected),
                "{list:?}: {err:?} lacks {expected:?}"
            );
        }
    }

    #[test]
    fn header_errors_never_show_the_value() {
        let secret = "sk-live-0123456789abcdef";
        for bad in [
            format!("Authorization Bearer {secret}"),
            format!("Bad Name: {secret}"),
            format!(": {secret}"),
            format!("Authorization: Bearer {secret}\r\nx-evil: 1"),
        ] {
            let err = args(&["http://a/", "--header", &bad]).unwrap_err();
            assert!(err.starts_with("--header"), "{err}");
            assert!(!err.contains(secret) && !err.contains("Bearer"), "{err}");
        }
        // A malformed header in the `--header=` form too.
        let err = args(&[
            "http://a/",
            &format!("--header=Authorization Bearer {secret}"),
        ])
        .unwrap_err();
        assert!(!err.contains(secret), "{err}");
    }
}
