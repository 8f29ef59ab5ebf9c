//! A real NVML recording replayed through the validator: 75 s of `servesim telemetry record` at 10 Hz
//! on an NVIDIA H200 while the silicon probe (validator/probe/silicon_probe.py) ran Qwen2.5-7B-shaped
//! forward passes (fixtures/telemetry/h200-probe-nvml.json). Everything below goes through the
//! validator's own code: the recording's parser, the replay source and sampler, the per-level
//! summaries, claim 6 of the ledger, the report, the charts and telemetry.csv.

use std::time::{Duration, Instant};

use servesim_validator::compare::Recording;
use servesim_validator::ledger::{RealVerdict, evaluate};
use servesim_validator::telemetry::{
    LevelTelemetry, Sampler, TelemetryRecording, TelemetrySource, summarize,
};
use servesim_validator::validation::{Environment, RealRun, assemble, run_sim, write_report};
use servesim_validator::{DrillKind, DrillParams, Start};

const FIXTURE: &str = "fixtures/telemetry/h200-probe-nvml.json";

fn fixture_path(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

fn recording() -> TelemetryRecording {
    TelemetryRecording::load(&fixture_path(FIXTURE)).expect("the H200 recording parses")
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn the_recording_parses_with_its_device_facts() {
    let r = recording();
    assert_eq!(r.facts.name, "NVIDIA H200");
    assert_eq!(r.facts.power_limit_w, 700.0);
    assert_eq!(r.facts.memory_total_bytes, 150_754_820_096);
    assert_eq!(r.facts.driver_version, "580.159.04");
    assert_eq!(r.facts.cuda_version, "13.0");
    assert_eq!(r.facts.pcie_link, "PCIe gen 5 x16");
    assert_eq!(r.interval_s, 0.1);
    assert_eq!(r.samples.len(), 750);
    assert!(
        r.samples.windows(2).all(|w| w[0].t < w[1].t),
        "time increases"
    );
}

#[test]
fn summary_has_the_real_peaks_and_sampling() {
    let s = recording().summary().expect("samples");
    assert_eq!(s.samples, 750);
    assert!(close(s.span_s, 74.9, 0.05), "span {}", s.span_s);
    assert!(
        close(s.median_interval_s, 0.1, 0.001),
        "sampler period {}",
        s.median_interval_s
    );
    // Peak power 698 W against the 700 W limit, SM clock up to 1980 MHz, 88 GB used.
    assert_eq!(s.all.power_w.max.round(), 698.0);
    assert!(s.all.power_w.max <= s.power_limit_w);
    assert_eq!(s.all.sm_clock_mhz.max, 1980.0);
    assert_eq!(s.peak_mem_used_bytes, 87_858_937_856);
    assert!(close(s.all.mem_used_gib.max, 81.83, 0.01));
    assert_eq!(s.all.gpu_util_pct.max, 100.0);
    assert_eq!(s.all.temperature_c.max, 57.0);
    // Idle at the start and for the last ~44 s: the whole-run mean is far below the busy stretch's.
    let busy = s.busy.as_ref().expect("the GPU worked");
    assert!(
        close(busy.start, 5.0, 0.1) && close(busy.end, 30.6, 0.1),
        "{busy:?}"
    );
    assert_eq!(busy.samples, 257);
    assert!(busy.gpu_util_pct.mean >= 89.0, "{busy:?}");
    assert!(busy.power_w.mean > 2.0 * s.all.power_w.mean * 0.9);
    // Throttling: NVML's idle bit while idle and the software power cap at 700 W, nothing thermal.
    assert_eq!(
        s.throttle,
        vec![
            ("gpu idle".to_string(), 474),
            ("software power cap".to_string(), 197)
        ]
    );
    assert!(close(s.all.throttled_fraction, 197.0 / 750.0, 1e-12));
}

#[test]
fn levels_join_by_time_window_and_see_the_power_cap() {
    let r = recording();
    // Consecutive 5 s levels with edges between samples (samples sit near multiples of 0.1 s):
    // every sample lands in exactly one level.
    let levels: Vec<LevelTelemetry> = (0..15)
        .filter_map(|i| {
            let (a, b) = (f64::from(i) * 5.0 - 0.05, f64::from(i + 1) * 5.0 - 0.05);
            summarize(&r.samples, "probe", &format!("{i}"), a, b)
        })
        .collect();
    assert_eq!(levels.len(), 15);
    assert_eq!(levels.iter().map(|l| l.samples).sum::<usize>(), 750);
    // Idle levels: no utilisation, ~78 W, SM clock parked at 345 MHz.
    let idle = &levels[10];
    assert_eq!(idle.gpu_util_pct.max, 0.0);
    assert!(
        idle.power_w.mean < 80.0 && idle.sm_clock_mhz.max == 345.0,
        "{idle:?}"
    );
    // The power-capped stretch (15-19 s: the largest batches): at the 700 W cap the SM clock falls
    // from 1980 to ~1665 MHz, and every sample carries the software power-cap bit.
    let capped = summarize(&r.samples, "probe", "capped", 15.0, 19.0).expect("samples");
    assert!(capped.gpu_util_pct.mean >= 99.0, "{capped:?}");
    assert!(capped.power_w.mean >= 0.98 * 700.0, "{capped:?}");
    assert!(capped.sm_clock_mhz.mean < 1800.0, "{capped:?}");
    assert_eq!(capped.throttled_fraction, 1.0);
}

#[test]
fn ledger_claim_6_is_substantiated_at_the_capped_level() {
    let r = recording();
    let baseline = Recording::load(&fixture_path(
        "fixtures/recordings/a6000-qwen2.5-7b-baseline.json",
    ))
    .expect("baseline recording");
    let knee = summarize(&r.samples, "saturation", "256", 15.0, 19.0).expect("samples");
    let l = evaluate(&baseline, &baseline, Some(&knee), Some(&r.facts));
    let c6 = l.claims.iter().find(|c| c.id == 6).expect("claim 6");
    assert_eq!(c6.real, RealVerdict::Substantiated, "{c6:?}");
    assert!(c6.real_evidence.contains("of the 700 W limit"), "{c6:?}");
    // An idle stretch refutes it.
    let idle = summarize(&r.samples, "saturation", "256", 40.0, 70.0).expect("samples");
    let l = evaluate(&baseline, &baseline, Some(&idle), Some(&r.facts));
    let c6 = l.claims.iter().find(|c| c.id == 6).expect("claim 6");
    assert_eq!(c6.real, RealVerdict::Refuted, "{c6:?}");
}

#[test]
fn replay_feeds_the_sampler_the_recorded_readings_in_order() {
    let r = recording();
    let mut src = r.replay();
    assert_eq!(src.facts().expect("facts"), r.facts);
    let sampler = Sampler::start(Box::new(src), Duration::from_micros(200));
    let deadline = Instant::now() + Duration::from_secs(30);
    while sampler.elapsed() < 0.5 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let (samples, errors) = sampler.finish();
    assert!(Instant::now() < deadline);
    assert!(errors.is_empty(), "{errors:?}");
    assert!(!samples.is_empty());
    // The sampler stamps its own time; every other field is the recording's, in order, cycling.
    for (i, s) in samples.iter().enumerate() {
        let want = r.samples[i % r.samples.len()];
        assert_eq!(
            (s.power_w, s.sm_clock_mhz),
            (want.power_w, want.sm_clock_mhz)
        );
        assert_eq!(s.mem_used_bytes, want.mem_used_bytes);
    }
}

#[test]
fn the_report_charts_and_csv_carry_the_h200_telemetry() {
    let r = recording();
    let baseline = Recording::load(&fixture_path(
        "fixtures/recordings/a6000-qwen2.5-7b-baseline.json",
    ))
    .expect("baseline recording");
    let profile = servesim_models::Profile::builtin("h200-qwen2.5-7b").expect("profile");
    let sim = run_sim(
        &profile,
        &[DrillKind::Baseline],
        &DrillParams::default(),
        0,
        Start::Warm,
    )
    .expect("sim");
    let levels: Vec<LevelTelemetry> = [(5.0, 15.0), (15.0, 19.0), (40.0, 74.9)]
        .iter()
        .enumerate()
        .filter_map(|(i, (a, b))| summarize(&r.samples, "probe", &format!("w{i}"), *a, *b))
        .collect();
    let real = RealRun {
        recording: baseline,
        facts: Some(r.facts.clone()),
        telemetry_note: None,
        samples: r.samples,
        levels,
    };
    let v = assemble(Environment::default(), real, sim);
    let dir = std::env::temp_dir().join(format!("servesim-h200-telemetry-{}", std::process::id()));
    let files = write_report(&dir, &v).expect("report written");
    let read = |name: &str| {
        assert!(
            files.iter().any(|f| f.ends_with(name)),
            "{name} not written"
        );
        std::fs::read_to_string(dir.join(name)).expect("read")
    };
    let md = read("report.md");
    assert!(
        md.contains("| GPU (NVML) | NVIDIA H200 (GPU-3a88e194-f0cc-97e5-5466-bad3ed3d8261), 140.4 GiB, driver 580.159.04, CUDA 13.0, power limit 700 W, PCIe gen 5 x16 |"),
        "{md}"
    );
    assert!(md.contains("## GPU telemetry per level"), "{md}");
    // The capped level's row: 40 samples, power max 698 W, SM clock down to ~1665 MHz.
    let row = md
        .lines()
        .find(|l| l.starts_with("| probe | w1 |"))
        .expect("w1 row");
    assert!(row.contains("| 41 |") || row.contains("| 40 |"), "{row}");
    assert!(row.contains("/ 698 |"), "{row}");
    let svg = read("gpu-telemetry.svg");
    assert!(svg.contains("power, % of 700 W"), "chart legend");
    let csv = read("telemetry.csv");
    assert_eq!(csv.lines().count(), 751);
    assert!(
        csv.lines().any(|l| l.contains(",698.4,")),
        "peak power in the CSV"
    );
    let json = read("report.json");
    assert!(json.contains("\"name\": \"NVIDIA H200\""));
    let _ = std::fs::remove_dir_all(&dir);
}
