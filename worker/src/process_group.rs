//! Signals a command's whole process group: TERM asks everything the command started to stop,
//! KILL makes sure an abandoned attempt leaves nothing behind (`sh -c "a | b"` runs `a` and `b`
//! as children of the shell, not of the worker).
//!
//! Signals are sent by the shell's `kill` builtin: the standard library has no safe call to
//! signal a process group, and this crate forbids `unsafe`.

use std::process::Stdio;

/// Kills the group on [`kill`](Self::kill) or on drop, unless [`disarm`](Self::disarm)ed first.
///
/// Only signal while the group leader is unreaped, or while a member may still run: until the
/// last of them is gone its id cannot be reused.
#[derive(Debug)]
pub(crate) struct GroupGuard {
    pgid: Option<u32>,
}

impl GroupGuard {
    /// Guards the group led by `pid` (a child spawned with `process_group(0)`).
    pub(crate) fn new(pid: Option<u32>) -> Self {
        Self { pgid: pid }
    }

    /// The child exited on its own: leave whatever it left running alone.
    pub(crate) fn disarm(&mut self) {
        self.pgid = None;
    }

    /// Sends SIGTERM to the group, then SIGCONT so that a stopped member sees it too, and
    /// waits for the `kill` to be delivered. Stays armed: the group is still killed on
    /// [`kill`](Self::kill) or drop.
    pub(crate) async fn terminate(&self) {
        if let Some(pgid) = self.pgid {
            signal(pgid, &terminate_script(pgid)).await;
        }
    }

    /// Sends SIGKILL to the group and waits for the `kill` to be delivered.
    pub(crate) async fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            signal(pgid, &kill_script(pgid)).await;
        }
    }
}

async fn signal(pgid: u32, script: &str) {
    match shell(script).status().await {
        Ok(status) if status.success() => {}
        // The group may be gone already; nothing else to do.
        Ok(status) => tracing::debug!(pgid, %status, script, "signalling the process group failed"),
        Err(error) => tracing::warn!(pgid, %error, script, "cannot run kill for process group"),
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let Some(pgid) = self.pgid.take() else {
            return;
        };
        // Inside a runtime, tokio reaps the dropped `kill` child in the background; outside one
        // (never expected), wait for it so it does not linger as a zombie.
        let result = if tokio::runtime::Handle::try_current().is_ok() {
            shell(&kill_script(pgid)).spawn().map(drop)
        } else {
            std::process::Command::new("sh")
                .args(["-c", &kill_script(pgid)])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .map(drop)
        };
        if let Err(error) = result {
            tracing::warn!(pgid, %error, "cannot run kill for process group");
        }
    }
}

fn kill_script(pgid: u32) -> String {
    format!("kill -s KILL -- -{pgid} 2>/dev/null")
}

/// A stopped process keeps a TERM pending until it is continued.
fn terminate_script(pgid: u32) -> String {
    format!("kill -s TERM -- -{pgid} 2>/dev/null && kill -s CONT -- -{pgid} 2>/dev/null")
}

fn shell(script: &str) -> tokio::process::Command {
    let mut command = tokio::process::Command::new("sh");
    command
        .args(["-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}
