//! A NATS server with JetStream and file storage in its own container, one per test.

use std::net::TcpListener;
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::ensure;
use testcontainers::clients::Cli;
use testcontainers::core::WaitFor;
use testcontainers::{Container, GenericImage, RunnableImage};

use crate::wait::eventually;

/// The image `just nats-image` builds: a static nats-server on an empty base.
pub const NATS_IMAGE: &str = "workforce-nats";
pub const NATS_TAG: &str = "local";

fn docker() -> &'static Cli {
    static DOCKER: OnceLock<Cli> = OnceLock::new();
    DOCKER.get_or_init(Cli::default)
}

/// A NATS server with JetStream, on a fixed host port so that clients reconnect to the same
/// address after the container is stopped and started. Removed when dropped.
pub struct Nats {
    container: Container<'static, GenericImage>,
    pub url: String,
}

impl std::fmt::Debug for Nats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nats")
            .field("id", &self.id())
            .field("url", &self.url)
            .finish()
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free local port")
}

fn docker_cli(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("docker").args(args).output()?;
    ensure!(
        out.status.success(),
        "docker {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(())
}

impl Nats {
    /// Starts a server in a new container and waits until it is ready. Blocks a thread of a
    /// multi-threaded tokio runtime (`block_in_place`) while docker starts it.
    pub async fn start() -> Self {
        tokio::task::block_in_place(|| {
            let port = free_port();
            let image = GenericImage::new(NATS_IMAGE, NATS_TAG)
                .with_exposed_port(4222)
                .with_wait_for(WaitFor::message_on_stderr("Server is ready"));
            let args = vec!["-js".to_owned(), "-sd".to_owned(), "/data".to_owned()];
            let container =
                docker().run(RunnableImage::from((image, args)).with_mapped_port((port, 4222)));
            Self {
                container,
                url: format!("nats://127.0.0.1:{port}"),
            }
        })
    }

    pub fn id(&self) -> &str {
        self.container.id()
    }

    /// Freezes the server: connections stay open, nothing is answered.
    pub fn pause(&self) -> anyhow::Result<()> {
        docker_cli(&["pause", self.id()])
    }

    pub fn unpause(&self) -> anyhow::Result<()> {
        docker_cli(&["unpause", self.id()])
    }

    /// Stops the server (SIGTERM); its data stays in the container's file store.
    pub fn stop(&self) -> anyhow::Result<()> {
        docker_cli(&["stop", "--time", "10", self.id()])
    }

    /// Starts a stopped server again on the same port, and waits until it accepts clients.
    pub async fn restart(&self) -> anyhow::Result<()> {
        docker_cli(&["start", self.id()])?;
        let url = self.url.clone();
        eventually(
            "NATS accepts connections again",
            Duration::from_secs(30),
            || {
                let url = url.clone();
                async move { Ok(async_nats::connect(&url).await.ok().map(drop)) }
            },
        )
        .await
    }
}
