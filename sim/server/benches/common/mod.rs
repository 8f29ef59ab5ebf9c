//! Helpers shared by the server benchmarks: per-thread CPU time and environment settings.

#![allow(
    dead_code,
    reason = "each bench compiles this module and uses a part of it"
)]

use std::fs::File;
use std::io::{Read, Seek};

/// A thread's (or the process's) name and CPU ticks (user + system) from its `stat` text.
fn parse_stat(stat: &str) -> Option<(&str, u64)> {
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    // Fields after the name: state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat.get(close + 2..)?.split(' ').collect();
    let field = |i: usize| {
        rest.get(i - 3)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Some((stat.get(open + 1..close)?, field(14) + field(15)))
}

/// CPU seconds used so far by this process's threads whose name starts with one of `prefixes`
/// (NaN when `/proc` cannot be read: see [`CpuMeter`] for a measurement under load).
pub fn thread_cpu(prefixes: &[&str], ticks_per_s: f64) -> f64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let mut ticks = 0u64;
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, t)) = parse_stat(&stat)
            && prefixes.iter().any(|p| name.starts_with(p))
        {
            ticks += t;
        }
    }
    ticks as f64 / ticks_per_s
}

/// CPU time of the process and of chosen threads, read from `stat` files opened before a load.
///
/// Why: with thousands of connections (client and server in one process: two descriptors per
/// stream) the process can run out of file descriptors, and [`thread_cpu`], which opens
/// `/proc/self/task` each time, then read nothing (the server's CPU per token printed as NaN at
/// 16 k streams).
#[derive(Debug)]
pub struct CpuMeter {
    process: File,
    threads: Vec<File>,
    ticks_per_s: f64,
    text: String,
}

impl CpuMeter {
    /// Open the process's `stat` and those of the `count` threads whose name starts with one of
    /// `prefixes` (threads started later are counted only in [`CpuMeter::process`]). A thread
    /// names itself once it runs, so this waits (up to 2 s) until `count` are seen.
    pub fn open(prefixes: &[&str], count: usize, ticks_per_s: f64) -> std::io::Result<CpuMeter> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut threads = Vec::new();
        loop {
            threads.clear();
            for entry in std::fs::read_dir("/proc/self/task")?.flatten() {
                let path = entry.path().join("stat");
                let Ok(stat) = std::fs::read_to_string(&path) else {
                    continue;
                };
                if let Some((name, _)) = parse_stat(&stat)
                    && prefixes.iter().any(|p| name.starts_with(p))
                {
                    threads.push(File::open(path)?);
                }
            }
            if threads.len() >= count || std::time::Instant::now() > deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        if threads.len() < count {
            eprintln!(
                "warning: {} of {count} threads named {prefixes:?} found; CPU figures are off",
                threads.len()
            );
        }
        Ok(CpuMeter {
            process: File::open("/proc/self/stat")?,
            threads,
            ticks_per_s,
            text: String::with_capacity(1024),
        })
    }

    fn read(file: &mut File, text: &mut String) -> u64 {
        text.clear();
        if file.rewind().is_err() || file.read_to_string(text).is_err() {
            return 0;
        }
        parse_stat(text).map_or(0, |(_, t)| t)
    }

    /// CPU seconds used so far by the whole process (threads that ended included).
    pub fn process(&mut self) -> f64 {
        Self::read(&mut self.process, &mut self.text) as f64 / self.ticks_per_s
    }

    /// CPU seconds used so far by the threads chosen at [`CpuMeter::open`] (an ended thread's
    /// time no longer counts: choose threads that live through the measurement).
    pub fn threads(&mut self) -> f64 {
        let mut ticks = 0;
        for f in &mut self.threads {
            ticks += Self::read(f, &mut self.text);
        }
        ticks as f64 / self.ticks_per_s
    }
}

/// The soft limit on open file descriptors (`None` when unknown or unlimited).
pub fn fd_limit() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

pub fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
