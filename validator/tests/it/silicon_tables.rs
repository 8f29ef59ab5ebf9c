//! The silicon tables under fixtures/silicon/: the H200 reference and the tiny CPU example written by
//! validator/probe/silicon_probe.py share one format (the keys and JSON types of every object and row),
//! and their figures are consistent (min <= median <= max, KV bytes per token from the shape, the
//! parameter count of the shape). `servesim calibrate --silicon` reads this format.

use serde_json::Value;

fn table(name: &str) -> Value {
    let path = format!("{}/../fixtures/silicon/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("reading {path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_u64() || n.is_i64() => "int",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Differences between `got` and the reference's shape, with their JSON paths.
fn diff(reference: &Value, got: &Value, path: &str, out: &mut Vec<String>) {
    match (reference, got) {
        (Value::Object(r), Value::Object(g)) => {
            let mut rk: Vec<&String> = r.keys().collect();
            let mut gk: Vec<&String> = g.keys().collect();
            rk.sort();
            gk.sort();
            if rk != gk {
                out.push(format!("{path}: keys {gk:?}, reference {rk:?}"));
            }
            for (k, rv) in r {
                if let Some(gv) = g.get(k) {
                    diff(rv, gv, &format!("{path}.{k}"), out);
                }
            }
        }
        (Value::Array(r), Value::Array(g)) => {
            if let Some(first) = r.first() {
                for (i, gv) in g.iter().enumerate() {
                    diff(first, gv, &format!("{path}[{i}]"), out);
                }
            }
        }
        // A float field may hold an integral value; an integer field stays an integer.
        (r, g) if kind(r) == kind(g) || (kind(r) == "number" && kind(g) == "int") => {}
        (r, g) => out.push(format!(
            "{path}: {} where the reference has {}",
            kind(g),
            kind(r)
        )),
    }
}

fn f(v: &Value) -> f64 {
    v.as_f64().expect("a number")
}

fn u(v: &Value) -> u64 {
    v.as_u64().expect("an unsigned integer")
}

/// Every timing object: positive median between min and max, positive reps.
fn check_timings(v: &Value, path: &str) {
    match v {
        Value::Object(o) => {
            if let Some(med) = o.get("median_s") {
                let (lo, med, hi) = (f(&o["min_s"]), f(med), f(&o["max_s"]));
                assert!(
                    med > 0.0 && lo <= med && med <= hi,
                    "{path}: {lo} {med} {hi}"
                );
                assert!(u(&o["reps"]) > 0, "{path}: reps");
            }
            for (k, x) in o {
                check_timings(x, &format!("{path}.{k}"));
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                check_timings(x, &format!("{path}[{i}]"));
            }
        }
        _ => {}
    }
}

/// Parameters of the probe's decoder for the table's shape; `with_final_norm` counts the final
/// RMSNorm's weight (the probe counts every tensor it allocates; the H200 run left that one out).
fn shape_params(m: &Value, with_final_norm: bool, tied: bool) -> u64 {
    let (h, i, l) = (u(&m["hidden"]), u(&m["inter"]), u(&m["layers"]));
    let (heads, kv, hd, vocab) = (u(&m["heads"]), u(&m["kv"]), u(&m["hd"]), u(&m["vocab"]));
    let qkv = (heads + 2 * kv) * hd;
    let bias = if m["bias"].as_bool().expect("bias") {
        qkv
    } else {
        0
    };
    let layer = qkv * h + bias + h * heads * hd + 3 * h * i + 2 * h;
    let tables = if tied { 1 } else { 2 };
    l * layer + tables * vocab * h + if with_final_norm { h } else { 0 }
}

#[test]
fn the_cpu_example_has_the_h200_tables_format() {
    let reference = table("h200-qwen2.5-7b-forward.json");
    let example = table("cpu-tiny-example.json");
    let mut out = Vec::new();
    diff(&reference, &example, "$", &mut out);
    assert!(out.is_empty(), "format differences:\n{}", out.join("\n"));
    for (name, key) in [
        ("decode", "batch"),
        ("prefill", "tokens"),
        ("mixed", "chunk"),
    ] {
        let rows = example[name].as_array().expect("rows");
        assert!(!rows.is_empty(), "no {name} rows");
        assert!(rows.iter().all(|r| u(&r[key]) > 0 && r["model"] == "tiny"));
    }
}

#[test]
fn both_tables_are_consistent_with_their_model_shape() {
    for (name, elt_bytes, final_norm) in [
        ("h200-qwen2.5-7b-forward.json", 2, false),
        ("cpu-tiny-example.json", 4, true),
    ] {
        let t = table(name);
        check_timings(&t, name);
        let m = &t["model"];
        assert_eq!(
            u(&m["kv_bytes_per_token"]),
            2 * u(&m["layers"]) * u(&m["kv"]) * u(&m["hd"]) * elt_bytes,
            "{name}"
        );
        assert_eq!(
            u(&m["params"]),
            shape_params(m, final_norm, false),
            "{name}"
        );
        assert_eq!(u(&m["heads"]) % u(&m["kv"]), 0, "{name}");
        assert_eq!(t["units"], "seconds");
        assert!(t["method"].as_array().is_some_and(|m| m.len() == 5));
    }
    // The H200 reference: the Qwen2.5-7B shape of the catalogue (less the final norm's 3584).
    let h = table("h200-qwen2.5-7b-forward.json");
    let m = &h["model"];
    assert_eq!(u(&m["params"]) + u(&m["hidden"]), 7_615_616_512);
    assert_eq!(u(&h["sm_count"]), 132);
    // A decode step at batch 1 streams every weight once: 15.2 GB in 4.9 ms is 3.1 TB/s, under the
    // table's own streaming-GEMV figure (3.7 TB/s).
    let d0 = &h["decode"][0];
    assert_eq!((u(&d0["batch"]), u(&d0["context"])), (1, 128));
    let bw = 2.0 * u(&m["params"]) as f64 / f(&d0["median_s"]);
    let gemv = f(&h["sanity"]["gemv_stream_2GiB"]["bytes_per_s"]);
    assert!(bw > 0.7 * gemv && bw < gemv, "{bw:e} vs {gemv:e}");
}
