//! nginx launcher: a real nginx (Debian's package, `make nginx`) as a reverse
//! proxy in front of an address (Envoy's listener), on a free 127.0.0.1 port.
//!
//! Everything nginx writes — config, pid, error and access logs, every
//! `*_temp_path` — lives in a fresh temp dir used as its prefix. One process
//! (`daemon off; master_process off;`), killed on drop. The binary is
//! `$NGINX_BIN`, else `nginx` in `PATH`, else `/usr/sbin/nginx`.
//!
//! [`NginxOptions::gzip_sse`] turns on what a common nginx config does for text:
//! `gzip on` with `text/event-stream` in `gzip_types`. nginx's gzip filter then
//! holds an SSE stream back until its deflate buffer fills or the stream ends
//! (unless the upstream answers `x-accel-buffering: no`), and it only gzips
//! when the request says `accept-encoding: gzip`.

use std::fs;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::daemon::{find_bin, free_port_probe, wait_ready};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// How nginx proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxOptions {
    /// `gzip on; gzip_types text/event-stream; gzip_min_length 0;` in the location.
    pub gzip_sse: bool,
    /// `proxy_buffering` (nginx's default: on).
    pub proxy_buffering: bool,
}

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            gzip_sse: false,
            proxy_buffering: true,
        }
    }
}

impl NginxOptions {
    pub fn with_gzip_sse(mut self, on: bool) -> Self {
        self.gzip_sse = on;
        self
    }

    pub fn with_proxy_buffering(mut self, on: bool) -> Self {
        self.proxy_buffering = on;
        self
    }
}

/// `$NGINX_BIN`, else the first `nginx` in `PATH`, else `/usr/sbin/nginx`.
pub fn nginx_bin() -> PathBuf {
    find_bin("NGINX_BIN", "nginx", "/usr/sbin/nginx")
}

/// The nginx config for a proxy on `listen` to `upstream`, everything under `dir`.
pub fn render_config(dir: &Path, listen: u16, upstream: SocketAddr, opts: &NginxOptions) -> String {
    let d = dir.display();
    let gzip = if opts.gzip_sse {
        "gzip on;\n            gzip_types text/event-stream;\n            gzip_min_length 0;"
    } else {
        "gzip off;"
    };
    let buffering = if opts.proxy_buffering { "on" } else { "off" };
    format!(
        r#"# Rendered by testbed::nginx.
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;

events {{
    worker_connections 256;
}}

http {{
    access_log {d}/access.log;
    client_body_temp_path {d}/client_body_temp;
    proxy_temp_path {d}/proxy_temp;
    fastcgi_temp_path {d}/fastcgi_temp;
    uwsgi_temp_path {d}/uwsgi_temp;
    scgi_temp_path {d}/scgi_temp;
    default_type application/octet-stream;

    server {{
        listen 127.0.0.1:{listen};
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 60s;
            proxy_buffering {buffering};
            {gzip}
        }}
    }}
}}
"#
    )
}

/// A running nginx. Dropping it kills nginx and removes its temp dir.
#[derive(Debug)]
pub struct Nginx {
    /// `127.0.0.1:<port>`: send client requests here.
    pub addr: SocketAddr,
    pub config_path: PathBuf,
    child: Option<Child>,
    dir: PathBuf,
}

impl Nginx {
    /// Writes the config, starts nginx and waits until its port accepts. On
    /// failure the error carries nginx's error log and output.
    pub fn start(upstream: SocketAddr, opts: &NginxOptions) -> Result<Nginx, String> {
        let bin = nginx_bin();
        if !bin.is_file() {
            return Err(format!(
                "nginx not found at {} (run `make nginx`, or set NGINX_BIN)",
                bin.display()
            ));
        }
        match Self::start_once(&bin, upstream, opts) {
            // Another process took the port between the probe and nginx's bind.
            Err(e) if e.contains("Address already in use") => {
                Self::start_once(&bin, upstream, opts)
            }
            other => other,
        }
    }

    fn start_once(bin: &Path, upstream: SocketAddr, opts: &NginxOptions) -> Result<Nginx, String> {
        let dir = crate::scratch::make_dir("nginx")?;
        let (probe, port) = free_port_probe()?;
        let config_path = dir.join("nginx.conf");
        fs::write(&config_path, render_config(&dir, port, upstream, opts))
            .map_err(|e| format!("cannot write {}: {e}", config_path.display()))?;
        let stdio = fs::File::create(dir.join("nginx.stdio.log"))
            .and_then(|f| Ok((f.try_clone()?, f)))
            .map_err(|e| format!("cannot create nginx's output file: {e}"))?;
        drop(probe);
        let child = Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&config_path)
            // The error log before the config is read (nginx ≥ 1.19.5).
            .arg("-e")
            .arg(dir.join("error.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdio.0))
            .stderr(Stdio::from(stdio.1))
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", bin.display()));
        let mut nginx = Nginx {
            addr: SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)),
            config_path,
            child: None,
            dir,
        };
        nginx.child = Some(child?);
        match nginx.wait_ready() {
            Ok(()) => Ok(nginx),
            Err(why) => {
                nginx.stop();
                Err(format!(
                    "nginx did not start: {why}\nconfig {}:\n{}\n--- nginx error log and output ---\n{}",
                    nginx.config_path.display(),
                    fs::read_to_string(&nginx.config_path).unwrap_or_default(),
                    nginx.log()
                ))
            }
        }
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let addr = self.addr;
        wait_ready(self.child.as_mut(), "nginx", READY_TIMEOUT, || {
            TcpStream::connect_timeout(&addr, Duration::from_millis(500))
                .map(drop)
                .map_err(|e| format!("{addr} refuses connections: {e}"))
        })
    }

    /// The process id of nginx, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The temp dir (nginx's prefix) holding the config, logs and temp paths.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// nginx's error log, then anything it wrote to stdout/stderr.
    pub fn log(&self) -> String {
        let mut s = fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        s.push_str(&fs::read_to_string(self.dir.join("nginx.stdio.log")).unwrap_or_default());
        s
    }

    /// The access log so far (a line per request, written when it ends).
    pub fn access_log(&self) -> String {
        fs::read_to_string(self.dir.join("access.log")).unwrap_or_default()
    }

    /// Kills nginx now. Idempotent; `drop` calls it too.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.stop();
        crate::scratch::remove_dir(&self.dir, "nginx");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client;
    use crate::replay::gunzip;
    use crate::scripted::{Chunking, Script, ScriptedUpstream};

    #[test]
    fn config_has_every_path_in_the_prefix_and_the_gzip_switch() {
        let up: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let dir = Path::new("/tmp/n");
        let plain = render_config(dir, 7002, up, &NginxOptions::default());
        for line in [
            "listen 127.0.0.1:7002;",
            "proxy_pass http://127.0.0.1:7001;",
            "proxy_http_version 1.1;",
            "proxy_set_header Connection \"\";",
            "proxy_buffering on;",
            "gzip off;",
            "pid /tmp/n/nginx.pid;",
        ] {
            assert!(plain.contains(line), "{line} in:\n{plain}");
        }
        for path in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            assert!(plain.contains(&format!("{path}_temp_path /tmp/n/{path}_temp;")));
        }
        let gz = render_config(dir, 7002, up, &NginxOptions::default().with_gzip_sse(true));
        assert!(gz.contains("gzip on;") && gz.contains("gzip_types text/event-stream;"));
    }

    /// Needs nginx (`make nginx`): proxies to a scripted upstream, gzips when
    /// asked, and the gzip body inflates to the upstream's bytes.
    #[test]
    fn proxies_and_gzips_when_asked() {
        let up = ScriptedUpstream::start().unwrap();
        let body = "data: {\"x\":1}\n\n".repeat(200);
        up.script(
            "a",
            Script::sse(body.clone()).chunking(Chunking::Fixed(500)),
        );
        let nginx = match Nginx::start(up.addr, &NginxOptions::default().with_gzip_sse(true)) {
            Ok(n) => n,
            Err(e) => panic!("{e}"),
        };
        let plain = client::post(nginx.addr, "/v1/x", &[("x-script", "a")], b"{}").unwrap();
        assert_eq!(plain.status, 200);
        assert_eq!(plain.header("content-encoding"), None);
        assert_eq!(plain.body, body.as_bytes());
        let gz = client::post(
            nginx.addr,
            "/v1/x",
            &[("x-script", "a"), ("accept-encoding", "gzip")],
            b"{}",
        )
        .unwrap();
        assert_eq!(gz.header("content-encoding"), Some("gzip"), "{gz:?}");
        assert!(gz.body.len() < body.len() / 4);
        assert_eq!(gunzip(&gz.body).unwrap(), body.as_bytes());
        assert!(nginx.access_log().contains("POST /v1/x"));
    }
}
