//! Envoy's hot restart: a second process (`--restart-epoch 1`, the same
//! `--base-id`) takes the listen sockets over from the running one, which
//! drains for `--drain-time-s` and exits after `--parent-shutdown-time-s`.
//! Epoch 0 picks a free base id itself (`--use-dynamic-base-id`) and writes
//! it to a file, so tests running side by side do not share one.

use std::fs;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::Envoy;
use crate::wait::eventually;

const BASE_ID_FILE: &str = "base-id";

/// The arguments that start epoch 0.
pub(super) fn first_epoch_args(dir: &Path) -> Vec<String> {
    vec![
        "--use-dynamic-base-id".to_string(),
        "--base-id-path".to_string(),
        dir.join(BASE_ID_FILE).display().to_string(),
        "--restart-epoch".to_string(),
        "0".to_string(),
    ]
}

impl Envoy {
    /// Starts the next epoch with the same config and arguments (and
    /// `extra_args` after them) and waits until it is ready; the running
    /// process becomes its parent, draining. Needs
    /// [`super::EnvoyOptions::with_hot_restart`].
    pub fn hot_restart(&mut self, extra_args: &[&str]) -> Result<(), String> {
        let base_id = fs::read_to_string(self.dir.join(BASE_ID_FILE))
            .map_err(|e| format!("no base id (started without with_hot_restart?): {e}"))?;
        let epoch = self.parents.len() + 1;
        let log_path = self.dir.join(format!("envoy.epoch{epoch}.log"));
        let stdio = fs::File::create(self.dir.join(format!("envoy.epoch{epoch}.stdio.log")))
            .map_err(|e| format!("cannot create the stdio log: {e}"))?;
        let stdio2 = stdio.try_clone().map_err(|e| e.to_string())?;
        let (bin, args) = &self.command;
        let child = Command::new(bin)
            .arg("--base-id")
            .arg(base_id.trim())
            .arg("--restart-epoch")
            .arg(epoch.to_string())
            .arg("--log-path")
            .arg(&log_path)
            .args(args)
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::from(stdio))
            .stderr(Stdio::from(stdio2))
            .spawn()
            .map_err(|e| format!("cannot start epoch {epoch}: {e}"))?;
        let parent = self.child.replace(child).ok_or("Envoy is not running")?;
        let old_log = std::mem::replace(&mut self.log_path, log_path);
        self.parents.push((parent, old_log));
        // Ready when the new epoch's admin answers (the parent's admin closes
        // first: the child asks it to).
        let ready = eventually(Duration::from_secs(30), || {
            let child = self.child.as_mut()?;
            if matches!(child.try_wait(), Ok(Some(_))) {
                return Some(Err(format!("epoch {epoch} exited:\n{}", self.log())));
            }
            let (code, body) = self.admin_get("/server_info").ok()?;
            (code == 200 && body.contains(&format!("\"restart_epoch\": {epoch}"))).then_some(Ok(()))
        });
        ready.unwrap_or_else(|| Err(format!("epoch {epoch} not ready:\n{}", self.log())))
    }

    /// Waits for the parents of a hot restart to exit; returns how many are
    /// still running at `timeout`.
    pub fn wait_parents_exited(&mut self, timeout: Duration) -> usize {
        let running = |parents: &mut Vec<(std::process::Child, std::path::PathBuf)>| {
            let mut count = 0;
            for (parent, _) in parents.iter_mut() {
                if !matches!(parent.try_wait(), Ok(Some(_))) {
                    count += 1;
                }
            }
            count
        };
        eventually(timeout, || (running(&mut self.parents) == 0).then_some(()));
        running(&mut self.parents)
    }
}
