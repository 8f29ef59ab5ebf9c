//! `servesim health`: one GET of a server's `/health`, exit 0 on 200. The container image is built
//! FROM scratch (no shell, no curl), so its HEALTHCHECK runs the binary itself.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Args;

/// Flags of `servesim health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// The health URL (plain http).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8000/health",
        env = "SERVESIM_HEALTH_URL"
    )]
    pub url: String,
    /// Seconds allowed for connecting and for the answer.
    #[arg(long, default_value_t = 5.0)]
    pub timeout: f64,
    /// Keep asking, every 50 ms, for up to this many seconds until the answer is 200 (a
    /// Kubernetes init container waiting for the Service; 0: ask once).
    #[arg(long, default_value_t = 0.0)]
    pub wait: f64,
}

/// Check once, or until `--wait` runs out.
pub fn run(args: &HealthArgs) -> Result<()> {
    let wait = Duration::try_from_secs_f64(args.wait)
        .context("--wait must be a number of seconds >= 0")?;
    let deadline = std::time::Instant::now() + wait;
    loop {
        match check(args) {
            Ok(()) => return Ok(()),
            Err(e) if std::time::Instant::now() >= deadline => return Err(e),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

/// GET the URL over HTTP/1.1 with `Connection: close` and require status 200.
fn check(args: &HealthArgs) -> Result<()> {
    let rest = args
        .url
        .strip_prefix("http://")
        .context("--url must start with http://")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let host_port = if authority.contains(':') && !authority.ends_with(']') {
        authority.to_string()
    } else {
        format!("{authority}:80")
    };
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--timeout must be a number of seconds > 0")?;
    let addr = host_port
        .to_socket_addrs()
        .with_context(|| format!("cannot resolve {host_port}"))?
        .next()
        .with_context(|| format!("no address for {host_port}"))?;
    let mut tcp = TcpStream::connect_timeout(&addr, timeout)
        .with_context(|| format!("cannot connect to {addr}"))?;
    tcp.set_read_timeout(Some(timeout))?;
    tcp.set_write_timeout(Some(timeout))?;
    write!(
        tcp,
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = Vec::new();
    tcp.take(4096)
        .read_to_end(&mut head)
        .context("no answer from the server")?;
    let status_line = String::from_utf8_lossy(&head);
    let status_line = status_line.lines().next().unwrap_or_default();
    match status_line.split_whitespace().nth(1) {
        Some("200") => Ok(()),
        _ => bail!("{} answered {status_line:?}", args.url),
    }
}
