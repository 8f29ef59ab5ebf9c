//! GPU telemetry during a real run: device facts once, samples at a fixed rate, summaries per level.
//!
//! The sampler reads a [`TelemetrySource`]: NVML on a GPU host ([`NvmlSource`], loaded at run time so
//! a machine without a driver just reports it absent), or a recorded fixture / fake in tests
//! ([`ReplaySource`]). Samples carry their time since the run started; levels are time windows, so
//! the drill code does not need to know about telemetry.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// What NVML says about the device, read once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceFacts {
    pub name: String,
    pub uuid: String,
    pub memory_total_bytes: u64,
    pub driver_version: String,
    /// CUDA driver API version, e.g. "12.4".
    pub cuda_version: String,
    pub power_limit_w: f64,
    pub pcie_link: String,
}

/// One reading of the device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// Seconds since the sampler started.
    pub t: f64,
    pub gpu_util_pct: f64,
    pub mem_util_pct: f64,
    pub mem_used_bytes: u64,
    pub power_w: f64,
    pub sm_clock_mhz: f64,
    pub mem_clock_mhz: f64,
    pub temperature_c: f64,
    /// NVML throttle-reason bits (0 = not throttled).
    pub throttle_reasons: u64,
}

/// Why telemetry is unavailable.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct TelemetryError(pub String);

/// Somewhere samples come from.
pub trait TelemetrySource: Send {
    fn facts(&mut self) -> Result<DeviceFacts, TelemetryError>;
    /// A reading now; `t` is filled in by the sampler.
    fn sample(&mut self) -> Result<Sample, TelemetryError>;
}

/// NVML, through nvml-wrapper (which loads `libnvidia-ml.so.1` at run time).
pub struct NvmlSource {
    nvml: nvml_wrapper::Nvml,
    index: u32,
}

impl std::fmt::Debug for NvmlSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvmlSource")
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl NvmlSource {
    /// Open NVML and check the device exists; an error (not a panic) without a driver.
    pub fn open(index: u32) -> Result<NvmlSource, TelemetryError> {
        let nvml = nvml_wrapper::Nvml::init()
            .map_err(|e| TelemetryError(format!("NVML unavailable: {e}")))?;
        nvml.device_by_index(index)
            .map_err(|e| TelemetryError(format!("NVML has no GPU {index}: {e}")))?;
        Ok(NvmlSource { nvml, index })
    }
}

fn nvml_err(what: &str) -> impl Fn(nvml_wrapper::error::NvmlError) -> TelemetryError + '_ {
    move |e| TelemetryError(format!("NVML {what}: {e}"))
}

impl TelemetrySource for NvmlSource {
    fn facts(&mut self) -> Result<DeviceFacts, TelemetryError> {
        let d = self
            .nvml
            .device_by_index(self.index)
            .map_err(nvml_err("device"))?;
        let cuda = self
            .nvml
            .sys_cuda_driver_version()
            .map_err(nvml_err("CUDA version"))?;
        let link = match (d.current_pcie_link_gen(), d.current_pcie_link_width()) {
            (Ok(g), Ok(w)) => format!("PCIe gen {g} x{w}"),
            _ => "unknown".to_string(),
        };
        Ok(DeviceFacts {
            name: d.name().map_err(nvml_err("name"))?,
            uuid: d.uuid().map_err(nvml_err("uuid"))?,
            memory_total_bytes: d.memory_info().map_err(nvml_err("memory"))?.total,
            driver_version: self
                .nvml
                .sys_driver_version()
                .map_err(nvml_err("driver version"))?,
            cuda_version: format!("{}.{}", cuda / 1000, (cuda % 1000) / 10),
            power_limit_w: f64::from(d.power_management_limit().unwrap_or(0)) / 1000.0,
            pcie_link: link,
        })
    }

    fn sample(&mut self) -> Result<Sample, TelemetryError> {
        use nvml_wrapper::enum_wrappers::device::{Clock, TemperatureSensor};
        let d = self
            .nvml
            .device_by_index(self.index)
            .map_err(nvml_err("device"))?;
        let util = d.utilization_rates().map_err(nvml_err("utilization"))?;
        Ok(Sample {
            t: 0.0,
            gpu_util_pct: f64::from(util.gpu),
            mem_util_pct: f64::from(util.memory),
            mem_used_bytes: d.memory_info().map(|m| m.used).unwrap_or(0),
            power_w: f64::from(d.power_usage().unwrap_or(0)) / 1000.0,
            sm_clock_mhz: f64::from(d.clock_info(Clock::SM).unwrap_or(0)),
            mem_clock_mhz: f64::from(d.clock_info(Clock::Memory).unwrap_or(0)),
            temperature_c: f64::from(d.temperature(TemperatureSensor::Gpu).unwrap_or(0)),
            throttle_reasons: d.current_throttle_reasons().map(|r| r.bits()).unwrap_or(0),
        })
    }
}

/// A recording (device facts and samples) played back in order, cycling; for tests and fixtures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplaySource {
    pub facts: DeviceFacts,
    pub samples: Vec<Sample>,
    #[serde(skip)]
    next: usize,
}

impl ReplaySource {
    pub fn new(facts: DeviceFacts, samples: Vec<Sample>) -> ReplaySource {
        ReplaySource {
            facts,
            samples,
            next: 0,
        }
    }
}

impl TelemetrySource for ReplaySource {
    fn facts(&mut self) -> Result<DeviceFacts, TelemetryError> {
        Ok(self.facts.clone())
    }

    fn sample(&mut self) -> Result<Sample, TelemetryError> {
        if self.samples.is_empty() {
            return Err(TelemetryError("the recording has no samples".into()));
        }
        let s = self.samples[self.next % self.samples.len()];
        self.next += 1;
        Ok(s)
    }
}

/// A background thread reading a source at a fixed interval until stopped.
#[derive(Debug)]
pub struct Sampler {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    errors: Arc<Mutex<Vec<String>>>,
    handle: Option<JoinHandle<()>>,
    started: Instant,
}

impl Sampler {
    /// Start sampling `source` every `interval` (10 Hz by default in the CLI).
    pub fn start(mut source: Box<dyn TelemetrySource>, interval: Duration) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let (s, sm, er) = (Arc::clone(&stop), Arc::clone(&samples), Arc::clone(&errors));
        let handle = std::thread::spawn(move || {
            let mut next = Instant::now();
            while !s.load(Ordering::Relaxed) {
                let t = started.elapsed().as_secs_f64();
                match source.sample() {
                    Ok(mut x) => {
                        x.t = t;
                        if let Ok(mut v) = sm.lock() {
                            v.push(x);
                        }
                    }
                    Err(e) => {
                        if let Ok(mut v) = er.lock()
                            && v.len() < 8
                        {
                            v.push(e.0);
                        }
                    }
                }
                next += interval;
                let now = Instant::now();
                if next > now {
                    std::thread::sleep(next - now);
                } else {
                    next = now;
                }
            }
        });
        Sampler {
            stop,
            samples,
            errors,
            handle: Some(handle),
            started,
        }
    }

    /// Seconds since the sampler started (the clock samples and level windows share).
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }

    /// Stop the thread and return every sample and the first few errors.
    pub fn finish(mut self) -> (Vec<Sample>, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
        let samples = self.samples.lock().map(|v| v.clone()).unwrap_or_default();
        let errors = self.errors.lock().map(|v| v.clone()).unwrap_or_default();
        (samples, errors)
    }
}

/// Mean, p95 and max of one quantity.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stat {
    pub mean: f64,
    pub p95: f64,
    pub max: f64,
}

impl Stat {
    fn of(values: &[f64]) -> Option<Stat> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        Some(Stat {
            mean: v.iter().sum::<f64>() / v.len() as f64,
            p95: crate::stats::percentile_linear(&v, 95.0).unwrap_or(0.0),
            max: v[v.len() - 1],
        })
    }
}

/// Telemetry summary of one level's time window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelTelemetry {
    pub drill: String,
    pub axis: String,
    pub start: f64,
    pub end: f64,
    pub samples: usize,
    pub gpu_util_pct: Stat,
    pub mem_util_pct: Stat,
    pub mem_used_gib: Stat,
    pub power_w: Stat,
    pub sm_clock_mhz: Stat,
    pub temperature_c: Stat,
    /// Fraction of samples with a throttle reason other than idle.
    pub throttled_fraction: f64,
}

/// NVML's "GPU idle" throttle bit, which is not a limit being hit.
const THROTTLE_IDLE: u64 = 0x1;

/// Summarise the samples inside `[start, end]`; `None` when no sample fell there.
pub fn summarize(
    samples: &[Sample],
    drill: &str,
    axis: &str,
    start: f64,
    end: f64,
) -> Option<LevelTelemetry> {
    let inside: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.t >= start && s.t <= end)
        .collect();
    let col = |f: fn(&Sample) -> f64| -> Vec<f64> { inside.iter().map(|s| f(s)).collect() };
    let throttled = inside
        .iter()
        .filter(|s| s.throttle_reasons & !THROTTLE_IDLE != 0)
        .count();
    Some(LevelTelemetry {
        drill: drill.to_string(),
        axis: axis.to_string(),
        start,
        end,
        samples: inside.len(),
        gpu_util_pct: Stat::of(&col(|s| s.gpu_util_pct))?,
        mem_util_pct: Stat::of(&col(|s| s.mem_util_pct))?,
        mem_used_gib: Stat::of(&col(|s| s.mem_used_bytes as f64 / (1u64 << 30) as f64))?,
        power_w: Stat::of(&col(|s| s.power_w))?,
        sm_clock_mhz: Stat::of(&col(|s| s.sm_clock_mhz))?,
        temperature_c: Stat::of(&col(|s| s.temperature_c))?,
        throttled_fraction: throttled as f64 / inside.len().max(1) as f64,
    })
}

/// A few seconds of a device's telemetry, as `servesim telemetry record` saves it; a [`ReplaySource`]
/// plays it back, so tests exercise the real sampler's output without a GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TelemetryRecording {
    pub facts: DeviceFacts,
    pub interval_s: f64,
    pub samples: Vec<Sample>,
}

impl TelemetryRecording {
    /// Record `source` for `seconds` at `interval`.
    pub fn record(
        mut source: Box<dyn TelemetrySource>,
        seconds: f64,
        interval: Duration,
    ) -> Result<TelemetryRecording, TelemetryError> {
        let facts = source.facts()?;
        let sampler = Sampler::start(source, interval);
        std::thread::sleep(Duration::from_secs_f64(seconds.max(0.0)));
        let (samples, errors) = sampler.finish();
        if samples.is_empty() {
            return Err(TelemetryError(format!(
                "no samples recorded: {}",
                errors.join("; ")
            )));
        }
        Ok(TelemetryRecording {
            facts,
            interval_s: interval.as_secs_f64(),
            samples,
        })
    }

    /// A source that replays this recording.
    pub fn replay(&self) -> ReplaySource {
        ReplaySource::new(self.facts.clone(), self.samples.clone())
    }
}

impl TelemetryRecording {
    /// Parse a recording as `servesim telemetry record` writes it.
    pub fn from_json(text: &str) -> Result<TelemetryRecording, TelemetryError> {
        serde_json::from_str(text)
            .map_err(|e| TelemetryError(format!("not a telemetry recording: {e}")))
    }

    /// Read a recording from a file.
    pub fn load(path: &str) -> Result<TelemetryRecording, TelemetryError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| TelemetryError(format!("cannot read {path}: {e}")))?;
        TelemetryRecording::from_json(&text).map_err(|e| TelemetryError(format!("{path}: {e}")))
    }

    /// The stretch from the first to the last sample with GPU utilisation at or above `min_util_pct`
    /// (where the device worked), as a `[start, end]` window on the samples' clock.
    pub fn busy_window(&self, min_util_pct: f64) -> Option<(f64, f64)> {
        let mut busy = self
            .samples
            .iter()
            .filter(|s| s.gpu_util_pct >= min_util_pct);
        let first = busy.next()?.t;
        let last = busy.next_back().map_or(first, |s| s.t);
        Some((first, last))
    }

    /// What the whole recording shows; `None` when it has no samples.
    pub fn summary(&self) -> Option<RecordingSummary> {
        let first = self.samples.first()?.t;
        let last = self.samples.last()?.t;
        let mut gaps: Vec<f64> = self.samples.windows(2).map(|w| w[1].t - w[0].t).collect();
        gaps.sort_by(f64::total_cmp);
        let median_interval_s = if gaps.is_empty() {
            0.0
        } else {
            crate::stats::percentile_linear(&gaps, 50.0).unwrap_or(0.0)
        };
        let busy = self
            .busy_window(BUSY_UTIL_PCT)
            .and_then(|(a, b)| summarize(&self.samples, "recording", "busy", a, b));
        let throttle = THROTTLE_REASONS
            .iter()
            .filter_map(|&(bit, name)| {
                let n = self
                    .samples
                    .iter()
                    .filter(|s| s.throttle_reasons & bit != 0)
                    .count();
                (n > 0).then(|| (name.to_string(), n))
            })
            .collect();
        Some(RecordingSummary {
            device: self.facts.name.clone(),
            power_limit_w: self.facts.power_limit_w,
            memory_total_bytes: self.facts.memory_total_bytes,
            interval_s: self.interval_s,
            samples: self.samples.len(),
            span_s: last - first,
            median_interval_s,
            peak_mem_used_bytes: self
                .samples
                .iter()
                .map(|s| s.mem_used_bytes)
                .max()
                .unwrap_or(0),
            all: summarize(&self.samples, "recording", "all", first, last)?,
            busy,
            throttle,
        })
    }
}

/// GPU utilisation (%) from which a sample counts as the device working, for [`RecordingSummary::busy`].
pub const BUSY_UTIL_PCT: f64 = 1.0;

/// NVML's throttle-reason bits (`nvmlClocksEventReasons`) and their names.
pub const THROTTLE_REASONS: [(u64, &str); 9] = [
    (0x1, "gpu idle"),
    (0x2, "applications clocks setting"),
    (0x4, "software power cap"),
    (0x8, "hardware slowdown"),
    (0x10, "sync boost"),
    (0x20, "software thermal slowdown"),
    (0x40, "hardware thermal slowdown"),
    (0x80, "hardware power brake"),
    (0x100, "display clock setting"),
];

/// A whole [`TelemetryRecording`] at a glance: how it was sampled, the summary over all of it and over
/// its busy stretch, peak memory, and how often each throttle reason was set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingSummary {
    pub device: String,
    pub power_limit_w: f64,
    pub memory_total_bytes: u64,
    /// The interval the recorder was asked for.
    pub interval_s: f64,
    pub samples: usize,
    /// First to last sample.
    pub span_s: f64,
    /// Median gap between consecutive samples (what the sampler achieved).
    pub median_interval_s: f64,
    pub peak_mem_used_bytes: u64,
    /// Every sample.
    pub all: LevelTelemetry,
    /// First to last sample with GPU utilisation >= [`BUSY_UTIL_PCT`]; `None` if the GPU never worked.
    pub busy: Option<LevelTelemetry>,
    /// Samples with each throttle reason set (reasons never set are left out).
    pub throttle: Vec<(String, usize)>,
}

impl RecordingSummary {
    /// A plain-text table, as `servesim telemetry summary` prints it.
    pub fn text(&self) -> String {
        use std::fmt::Write as _;
        let gib = (1u64 << 30) as f64;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{}: {} samples over {:.1} s (asked every {:.3} s, median gap {:.3} s); power limit {:.0} W, {:.1} GiB",
            self.device,
            self.samples,
            self.span_s,
            self.interval_s,
            self.median_interval_s,
            self.power_limit_w,
            self.memory_total_bytes as f64 / gib
        );
        let _ = writeln!(
            out,
            "peak memory used {:.2} GiB ({:.1} GB)",
            self.peak_mem_used_bytes as f64 / gib,
            self.peak_mem_used_bytes as f64 / 1e9
        );
        let _ = writeln!(
            out,
            "{:<6} {:>11} {:>7} {:>14} {:>16} {:>16} {:>16} {:>12} {:>9}",
            "window",
            "t (s)",
            "samples",
            "GPU util %",
            "power W",
            "SM MHz",
            "mem used GiB",
            "temp °C",
            "throttled"
        );
        let _ = writeln!(
            out,
            "{:<6} {:>11} {:>7} {:>14} {:>16} {:>16} {:>16} {:>12} {:>9}",
            "",
            "",
            "",
            "mean/p95/max",
            "mean/p95/max",
            "mean/p95/max",
            "mean/p95/max",
            "mean/p95/max",
            ""
        );
        for l in std::iter::once(&self.all).chain(&self.busy) {
            let s = |x: &Stat| format!("{:.0}/{:.0}/{:.0}", x.mean, x.p95, x.max);
            let _ = writeln!(
                out,
                "{:<6} {:>11} {:>7} {:>14} {:>16} {:>16} {:>16} {:>12} {:>8.0}%",
                l.axis,
                format!("{:.1}-{:.1}", l.start, l.end),
                l.samples,
                s(&l.gpu_util_pct),
                format!(
                    "{:.0}/{:.0}/{:.1}",
                    l.power_w.mean, l.power_w.p95, l.power_w.max
                ),
                s(&l.sm_clock_mhz),
                format!(
                    "{:.1}/{:.1}/{:.1}",
                    l.mem_used_gib.mean, l.mem_used_gib.p95, l.mem_used_gib.max
                ),
                s(&l.temperature_c),
                l.throttled_fraction * 100.0
            );
        }
        let reasons: Vec<String> = self
            .throttle
            .iter()
            .map(|(name, n)| format!("{name} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "throttle reasons (samples): {}",
            if reasons.is_empty() {
                "none".to_string()
            } else {
                reasons.join(", ")
            }
        );
        out.lines().map(|l| format!("{}\n", l.trim_end())).collect()
    }
}

/// The raw samples as CSV.
pub fn samples_csv(samples: &[Sample]) -> String {
    let mut out = String::from(
        "t_s,gpu_util_pct,mem_util_pct,mem_used_bytes,power_w,sm_clock_mhz,mem_clock_mhz,temperature_c,throttle_reasons\n",
    );
    for s in samples {
        out.push_str(&format!(
            "{:.3},{},{},{},{:.1},{},{},{},{:#x}\n",
            s.t,
            s.gpu_util_pct,
            s.mem_util_pct,
            s.mem_used_bytes,
            s.power_w,
            s.sm_clock_mhz,
            s.mem_clock_mhz,
            s.temperature_c,
            s.throttle_reasons
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(t: f64, util: f64, power: f64, throttle: u64) -> Sample {
        Sample {
            t,
            gpu_util_pct: util,
            mem_util_pct: util / 2.0,
            mem_used_bytes: 40 << 30,
            power_w: power,
            sm_clock_mhz: 1800.0,
            mem_clock_mhz: 8000.0,
            temperature_c: 70.0,
            throttle_reasons: throttle,
        }
    }

    #[test]
    fn summaries_are_exact_over_the_window() {
        let samples: Vec<Sample> = (0..20)
            .map(|i| {
                sample(
                    f64::from(i) * 0.1,
                    f64::from(i * 5),
                    100.0 + f64::from(i),
                    if i % 4 == 0 { 0x4 } else { 0x1 },
                )
            })
            .collect();
        // Window [0.5, 1.0] holds samples 5..=10 (t = 0.5 .. 1.0).
        let s =
            summarize(&samples, "saturation", "64", 0.5, 1.0 + 1e-9).expect("samples in window");
        assert_eq!(s.samples, 6);
        assert_eq!(
            s.gpu_util_pct.mean,
            (25.0 + 30.0 + 35.0 + 40.0 + 45.0 + 50.0) / 6.0
        );
        assert_eq!(s.gpu_util_pct.max, 50.0);
        assert!(
            (s.gpu_util_pct.p95 - 48.75).abs() < 1e-9,
            "{}",
            s.gpu_util_pct.p95
        );
        assert_eq!(s.power_w.max, 110.0);
        // Samples 8 (t = 0.8) is the only one in the window with a non-idle throttle reason.
        assert!((s.throttled_fraction - 1.0 / 6.0).abs() < 1e-12);
        assert_eq!(s.mem_used_gib.mean, 40.0);
        assert!(summarize(&samples, "x", "y", 5.0, 6.0).is_none());
    }

    #[test]
    fn sampler_reads_a_fake_source_until_stopped() {
        let facts = DeviceFacts {
            name: "Fake GPU".into(),
            uuid: "GPU-0".into(),
            memory_total_bytes: 48 << 30,
            driver_version: "0".into(),
            cuda_version: "0.0".into(),
            power_limit_w: 300.0,
            pcie_link: "none".into(),
        };
        let mut src = ReplaySource::new(facts.clone(), vec![sample(0.0, 90.0, 280.0, 0)]);
        assert_eq!(src.facts().expect("facts"), facts);
        let sampler = Sampler::start(Box::new(src), Duration::from_millis(2));
        let deadline = Instant::now() + Duration::from_secs(10);
        while sampler.samples.lock().map(|v| v.len()).unwrap_or(0) < 5 {
            assert!(Instant::now() < deadline, "sampler produced no samples");
            std::thread::sleep(Duration::from_millis(2));
        }
        let (samples, errors) = sampler.finish();
        assert!(samples.len() >= 5 && errors.is_empty());
        assert!(
            samples.windows(2).all(|w| w[0].t <= w[1].t),
            "timestamps increase"
        );
        assert!(samples.iter().all(|s| s.gpu_util_pct == 90.0));
    }

    #[test]
    fn nvml_absence_is_an_error_not_a_panic() {
        // CI machines have no NVIDIA driver; on a GPU host this opens the device instead.
        match NvmlSource::open(0) {
            Ok(mut src) => assert!(src.facts().is_ok()),
            Err(e) => assert!(e.0.contains("NVML"), "{e}"),
        }
    }
}
