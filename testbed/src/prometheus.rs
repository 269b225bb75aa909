//! Prometheus launcher: a real Prometheus server (Debian's package,
//! `make prometheus`) on a free 127.0.0.1 port, scraping Envoy's
//! `/stats/prometheus` every second, and a client of its query API.
//!
//! Its config and TSDB live in a fresh temp dir; the process is killed on
//! drop. The binary is `$PROMETHEUS_BIN`, else `prometheus` in `PATH`, else
//! `/usr/bin/prometheus`.

use std::collections::BTreeMap;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

use crate::daemon::{find_bin, free_port_probe, wait_ready};
use crate::envoy::http_get;
use crate::viewer::percent_encode;
use crate::wait::eventually;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const QUERY_TIMEOUT: Duration = Duration::from_secs(5);

/// `$PROMETHEUS_BIN`, else the first `prometheus` in `PATH`, else `/usr/bin/prometheus`.
pub fn prometheus_bin() -> PathBuf {
    find_bin("PROMETHEUS_BIN", "prometheus", "/usr/bin/prometheus")
}

/// The config: one job, `envoy`, scraping `admin`'s `/stats/prometheus`.
pub fn render_config(admin: SocketAddr, interval: Duration) -> String {
    let seconds = interval.as_secs().max(1);
    format!(
        "# Rendered by testbed::prometheus.
global:
  scrape_interval: {seconds}s
  evaluation_interval: {seconds}s
scrape_configs:
  - job_name: envoy
    metrics_path: /stats/prometheus
    static_configs:
      - targets: ['{admin}']
"
    )
}

/// One series of a query's result: its labels and its value.
pub type Series = (BTreeMap<String, String>, f64);

/// A client of a Prometheus server's query API (one this module started,
/// or the compose stack's).
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub addr: SocketAddr,
}

/// A running Prometheus. Dropping it kills the server and removes its dir.
/// Its API's methods are its own (`Deref`).
#[derive(Debug)]
pub struct Prometheus {
    /// `127.0.0.1:<port>`.
    pub api: Api,
    child: Option<Child>,
    dir: PathBuf,
}

impl std::ops::Deref for Prometheus {
    type Target = Api;

    fn deref(&self) -> &Api {
        &self.api
    }
}

impl Prometheus {
    /// Starts Prometheus scraping Envoy's admin address every second and
    /// waits until it answers `/-/ready`.
    pub fn scraping(admin: SocketAddr) -> Result<Prometheus, String> {
        let bin = prometheus_bin();
        if !bin.is_file() {
            return Err(format!(
                "prometheus not found at {} (run `make prometheus`, or set PROMETHEUS_BIN)",
                bin.display()
            ));
        }
        let dir = crate::scratch::make_dir("prometheus")?;
        let config = dir.join("prometheus.yml");
        fs::write(&config, render_config(admin, Duration::from_secs(1)))
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        let log = fs::File::create(dir.join("prometheus.log"))
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| format!("cannot create Prometheus's log: {e}"))?;
        let (probe, port) = free_port_probe()?;
        drop(probe);
        let child = Command::new(&bin)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.0))
            .stderr(Stdio::from(log.1))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()));
        let addr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port));
        let mut prometheus = Prometheus {
            api: Api { addr },
            child: None,
            dir,
        };
        prometheus.child = Some(child?);
        let ready = wait_ready(
            prometheus.child.as_mut(),
            "Prometheus",
            READY_TIMEOUT,
            || match http_get(addr, "/-/ready", Duration::from_secs(1)) {
                Ok((200, _)) => Ok(()),
                Ok((code, body)) => Err(format!("/-/ready answered {code}: {}", body.trim())),
                Err(e) => Err(e),
            },
        );
        match ready {
            Ok(()) => Ok(prometheus),
            Err(why) => Err(format!(
                "Prometheus did not start: {why}\n--- its log ---\n{}",
                prometheus.log()
            )),
        }
    }

    /// What Prometheus logged.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir.join("prometheus.log")).unwrap_or_default()
    }

    /// Kills Prometheus now. Idempotent; `drop` calls it too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Api {
    /// An instant query: the series of its vector (a scalar is one series
    /// without labels). Err for a refused query or an API error.
    pub fn query(&self, promql: &str) -> Result<Vec<Series>, String> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (code, body) = http_get(self.addr, &path, QUERY_TIMEOUT)?;
        let answer: Value = serde_json::from_str(&body)
            .map_err(|e| format!("query {promql}: answer is not JSON ({e}): {body}"))?;
        if code != 200 || answer["status"] != "success" {
            return Err(format!("query {promql}: {code} {body}"));
        }
        parse_result(&answer["data"]).map_err(|e| format!("query {promql}: {e}: {body}"))
    }

    /// The query's series once `done` accepts them, or the last answer as
    /// the error after `timeout`.
    pub fn query_until(
        &self,
        promql: &str,
        timeout: Duration,
        mut done: impl FnMut(&[Series]) -> bool,
    ) -> Result<Vec<Series>, String> {
        let mut last = Err(String::from("not queried yet"));
        let found = eventually(timeout, || {
            last = self.query(promql);
            match &last {
                Ok(series) if done(series) => Some(series.clone()),
                _ => None,
            }
        });
        found.ok_or_else(|| format!("{promql} after {timeout:?}: {last:?}"))
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        self.stop();
        crate::scratch::remove_dir(&self.dir, "Prometheus");
    }
}

/// The series of a query's `data`: a vector, or a scalar as one series.
fn parse_result(data: &Value) -> Result<Vec<Series>, String> {
    let number = |v: &Value| -> Result<f64, String> {
        v.get(1)
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("not a [time, \"value\"] pair: {v}"))
    };
    match data["resultType"].as_str() {
        Some("vector") => data["result"]
            .as_array()
            .ok_or("no result list")?
            .iter()
            .map(|item| {
                let labels = item["metric"]
                    .as_object()
                    .ok_or("a series without labels")?
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                Ok((labels, number(&item["value"])?))
            })
            .collect(),
        Some("scalar") => Ok(vec![(BTreeMap::new(), number(&data["result"])?)]),
        other => Err(format!("result type {other:?}, not a vector or a scalar")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vectors_and_scalars_parse_and_other_results_are_errors() {
        let vector = json!({"resultType":"vector","result":[
            {"metric":{"gen_ai_request_model":"llama3.1:8b"},"value":[1.5,"42"]},
            {"metric":{},"value":[1.5,"NaN"]}
        ]});
        let got = parse_result(&vector).unwrap();
        assert_eq!(got[0].0["gen_ai_request_model"], "llama3.1:8b");
        assert_eq!(got[0].1, 42.0);
        assert!(got[1].1.is_nan());
        let scalar = json!({"resultType":"scalar","result":[1.5,"3"]});
        assert_eq!(parse_result(&scalar).unwrap()[0].1, 3.0);
        assert!(parse_result(&json!({"resultType":"matrix","result":[]})).is_err());
        assert!(
            parse_result(&json!({"resultType":"vector","result":[{"metric":{},"value":[1]}]}))
                .is_err()
        );
    }

    #[test]
    fn the_config_scrapes_envoys_prometheus_endpoint() {
        let text = render_config("127.0.0.1:9901".parse().unwrap(), Duration::from_secs(1));
        assert!(text.contains("metrics_path: /stats/prometheus"), "{text}");
        assert!(
            text.contains("    static_configs:\n      - targets: ['127.0.0.1:9901']"),
            "{text}"
        );
        assert!(text.contains("scrape_interval: 1s"));
    }
}
