//! What the launchers of long-running servers share (Envoy, nginx,
//! Prometheus): a free port to give them, and the wait until they serve or
//! exit.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::Child;
use std::time::Duration;

use crate::wait::eventually;

/// A Debian-packaged program: `$<env>` when set, else the first `name` in
/// `PATH`, else `debian` (the package's path, whether it exists or not).
pub fn find_bin(env: &str, name: &str, debian: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(debian))
}

/// A listener on a free 127.0.0.1 port, and the port. Drop the listener
/// just before the server binds it.
pub fn free_port_probe() -> Result<(TcpListener, u16), String> {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| format!("cannot bind 127.0.0.1:0 to find a free port: {e}"))?;
    let port = l
        .local_addr()
        .map_err(|e| format!("cannot read a probe socket's port: {e}"))?
        .port();
    Ok((l, port))
}

/// Waits until `ready` says Ok, or `child` exits, or `timeout` passes. An
/// Err of `ready` says why it is not ready yet; the last one is in the error.
pub fn wait_ready(
    child: Option<&mut Child>,
    what: &str,
    timeout: Duration,
    mut ready: impl FnMut() -> Result<(), String>,
) -> Result<(), String> {
    let mut child = child;
    let mut last = String::from("not polled yet");
    let outcome = eventually(timeout, || {
        if let Some(child) = child.as_deref_mut() {
            match child.try_wait() {
                Ok(Some(status)) => return Some(Err(format!("{what} exited ({status})"))),
                Ok(None) => {}
                Err(e) => return Some(Err(format!("cannot poll the {what} process: {e}"))),
            }
        }
        match ready() {
            Ok(()) => Some(Ok(())),
            Err(why) => {
                last = why;
                None
            }
        }
    });
    outcome.unwrap_or_else(|| Err(format!("{what} not ready after {timeout:?} ({last})")))
}
