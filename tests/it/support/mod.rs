//! Helpers shared by the end-to-end tests.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

/// Path of the `servesim` binary cargo built for these tests.
pub fn servesim_bin() -> &'static str {
    env!("CARGO_BIN_EXE_servesim")
}

/// Run `servesim ARGS` to completion.
pub fn servesim(args: &[&str]) -> Output {
    Command::new(servesim_bin())
        .args(args)
        .output()
        .expect("the servesim binary runs")
}

/// Stdout of a successful run; panics with stderr otherwise.
pub fn stdout_ok(args: &[&str]) -> String {
    let out = servesim(args);
    assert!(
        out.status.success(),
        "servesim {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// The time and rate columns of a drill's row, in table order (after `axis`, `reqs`, `err`, `gen`).
pub const ROW_STAT_COLUMNS: [&str; 7] = [
    "ttft_p50",
    "ttft_p95",
    "tpot_p50",
    "e2e_p95",
    "e2e_p99",
    "tok_s",
    "goodput_pct",
];

/// The arguments of one `servesim bench` run, built flag by flag in the order the methods are
/// called: the e2e tests run many benches that differ in a few flags, and this keeps each call
/// site down to those few.
#[derive(Clone, Debug)]
pub struct BenchRun {
    args: Vec<String>,
}

impl BenchRun {
    /// `bench --url URL`: a run against an HTTP server.
    pub fn url(url: &str) -> BenchRun {
        BenchRun {
            args: vec!["bench".into(), "--url".into(), url.into()],
        }
    }

    /// `bench --target sim`: a run against the in-process simulator.
    pub fn sim() -> BenchRun {
        BenchRun {
            args: vec!["bench".into(), "--target".into(), "sim".into()],
        }
    }

    /// `--drill DRILLS` (one drill, a comma-separated list, or `all`).
    pub fn drill(self, drills: &str) -> BenchRun {
        self.extra(&["--drill", drills])
    }

    /// `--concurrency LEVELS` (a comma-separated list).
    pub fn concurrency(self, levels: &str) -> BenchRun {
        self.extra(&["--concurrency", levels])
    }

    /// `--requests-per-level N`.
    pub fn requests_per_level(self, n: usize) -> BenchRun {
        self.extra(&["--requests-per-level", &n.to_string()])
    }

    /// `--format json`: the drills as JSON on stdout.
    pub fn json(self) -> BenchRun {
        self.extra(&["--format", "json"])
    }

    /// `--out DIR`: where the run writes its records and summaries.
    pub fn out(self, dir: &Path) -> BenchRun {
        self.extra(&["--out", &dir.to_string_lossy()])
    }

    /// `--quiet`: no progress lines on stderr.
    pub fn quiet(self) -> BenchRun {
        self.extra(&["--quiet"])
    }

    /// Any other arguments, appended as they are (e.g. `&["--timeout", "0.5"]`).
    pub fn extra(mut self, args: &[&str]) -> BenchRun {
        self.args.extend(args.iter().map(|a| a.to_string()));
        self
    }

    /// A `servesim bench ...` command, for tests that spawn it and signal it.
    pub fn command(&self) -> Command {
        let mut command = Command::new(servesim_bin());
        command.args(&self.args);
        command
    }

    /// Run to completion, whatever the exit status ([`servesim`]).
    pub fn run(&self) -> Output {
        servesim(&self.arg_refs())
    }

    /// Stdout of a successful run; panics with stderr otherwise ([`stdout_ok`]).
    pub fn run_ok(&self) -> String {
        stdout_ok(&self.arg_refs())
    }

    fn arg_refs(&self) -> Vec<&str> {
        self.args.iter().map(String::as_str).collect()
    }
}

/// A `servesim serve` process on a loopback port chosen by the OS; killed when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl ServerProcess {
    /// Start `servesim serve --port 0 ARGS` and wait (at most 30 s) for its "listening on" line.
    pub fn start(args: &[&str]) -> ServerProcess {
        let mut command = Command::new(servesim_bin());
        command
            .args(["serve", "--host", "127.0.0.1", "--port", "0"])
            .args(args)
            .env("RUST_LOG", "info");
        ServerProcess::spawn(command)
    }

    /// Start a prepared command (another argv[0], other environment) that serves on a port it logs.
    pub fn spawn(mut command: Command) -> ServerProcess {
        use std::io::BufRead;
        let mut child = command
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the servesim binary starts");
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let sink = std::sync::Arc::clone(&log);
        // Keep draining stderr for the life of the process so it never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                if let Some(at) = line.find("listening on http://") {
                    let _ = tx.send(line[at + "listening on ".len()..].trim().to_string());
                }
                sink.lock().expect("log lock").push(line);
            }
        });
        let Ok(base) = rx.recv_timeout(std::time::Duration::from_secs(30)) else {
            let _ = child.kill();
            panic!(
                "servesim serve did not report its address: {:?}",
                log.lock().expect("log lock")
            );
        };
        ServerProcess { child, base, log }
    }

    /// Lines the server has logged so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// The process id (to send signals).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Wait (at most `timeout`) for the process to exit; its status, or `None` if still running.
    pub fn wait_exit(&mut self, timeout: std::time::Duration) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if std::time::Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Resident set size of process `pid` in KiB (`VmRSS` in /proc/PID/status); `None` off Linux.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Open file descriptors of process `pid` (entries of /proc/PID/fd); `None` off Linux.
pub fn open_fds(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(|d| d.count())
}

/// The `data:` payloads of a whole SSE body (panics on anything but `data:` events).
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {e:?}"))
                .to_string()
        })
        .collect()
}
