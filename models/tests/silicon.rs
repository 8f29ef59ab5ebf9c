//! The cost model against forward passes timed on real silicon, and the fit that calibrates a GPU.

use servesim_models::Profile;
use servesim_models::silicon::{SiliconTable, calibrate};

fn h200_table() -> SiliconTable {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../fixtures/silicon/h200-qwen2.5-7b-forward.json"
    );
    let text = std::fs::read_to_string(path).expect("fixture");
    SiliconTable::from_json(&text, path).expect("table")
}

#[test]
fn the_h200_profile_matches_every_row_of_the_h200_table() {
    let table = h200_table();
    assert_eq!(table.rows.len(), 45);
    let p = Profile::builtin("h200-qwen2.5-7b").expect("profile");
    let c = table.compare(&p, &p.gpu);
    for r in &c.rows {
        eprintln!(
            "{:32} measured {:8.3} ms model {:8.3} ms {:+6.1} %",
            r.row.shape.label(),
            r.row.measured_s * 1e3,
            r.model_s * 1e3,
            r.error * 100.0
        );
    }
    eprintln!(
        "median |error| {:.1} %, max {:.1} %",
        c.median_abs_error * 100.0,
        c.max_abs_error * 100.0
    );
    assert!(c.median_abs_error <= 0.10, "{}", c.median_abs_error);
    assert!(c.max_abs_error <= 0.25, "{}", c.max_abs_error);
}

#[test]
fn calibrating_from_another_card_recovers_the_h200() {
    let table = h200_table();
    // Start from the A6000's terms on the H200's data sheet: the fit must find the H200's own.
    let h200 = Profile::builtin("h200-qwen2.5-7b").expect("profile");
    let a6000 = Profile::builtin("a6000-qwen2.5-7b").expect("profile");
    let mut base = a6000.gpu;
    base.memory_bandwidth_bps = h200.gpu.memory_bandwidth_bps;
    base.tensor_flops = h200.gpu.tensor_flops;
    let before = table.compare(&h200, &base);
    let fit = calibrate(&table, &h200, &base);
    eprintln!("{:#?}", fit.gpu);
    eprintln!(
        "before: median {:.3} max {:.3}; after: median {:.3} max {:.3}",
        before.median_abs_error,
        before.max_abs_error,
        fit.comparison.median_abs_error,
        fit.comparison.max_abs_error
    );
    assert!(fit.bandwidth_measured);
    assert!(
        fit.comparison.median_abs_error <= 0.05,
        "{:?}",
        fit.comparison.median_abs_error
    );
    assert!(fit.comparison.max_abs_error <= 0.20);
    assert!(fit.comparison.median_abs_error < before.median_abs_error);
    // The GEMV microbenchmark gave the streaming bandwidth: 3.73 TB/s of 4.8.
    assert!((fit.gpu.bandwidth_efficiency - 0.776).abs() < 0.002);
}
