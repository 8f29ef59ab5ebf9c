//! End-to-end tests of `simulate`'s fleets and open-loop load: the real binary, read as a user would.

use crate::support::{servesim, stdout_ok};
use serde_json::Value;

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&stdout_ok(args)).expect("valid JSON on stdout")
}

#[test]
fn a_fleet_of_one_prints_what_one_server_prints() {
    for run in [
        &[
            "--workload",
            "multi-turn",
            "--sessions",
            "6",
            "--turns",
            "3",
        ][..],
        &[
            "--arrival",
            "gamma:cv=2",
            "--rate",
            "8",
            "--requests",
            "120",
        ][..],
        &["--trace", "fixtures/traces/mooncake-sample.jsonl"][..],
    ] {
        let mut plain = vec!["simulate", "--format", "json"];
        plain.extend_from_slice(run);
        let alone = json(&plain);
        for router in ["round-robin", "least-kv", "prefix-affinity"] {
            let mut fleet = plain.clone();
            fleet.extend_from_slice(&["--replicas", "1", "--router", router]);
            let mut v = json(&fleet);
            let o = v.as_object_mut().expect("object");
            let replicas = o.remove("replicas").expect("replica rows");
            assert_eq!(replicas[0]["requests"], alone["requests"], "{router}");
            assert!(o.remove("router").is_some());
            // Byte for byte, once the fleet's own rows are set aside.
            assert_eq!(
                serde_json::to_string(&v).expect("json"),
                serde_json::to_string(&alone).expect("json"),
                "{run:?} {router}"
            );
        }
    }
}

#[test]
fn a_mixed_fleet_reports_every_replica_and_the_router_spreads_by_speed() {
    let v = json(&[
        "simulate",
        "--format",
        "json",
        "--arrival",
        "poisson",
        "--rate",
        "20",
        "--requests",
        "600",
        "--input-tokens",
        "lognormal:mean=512,sd=256",
        "--output-tokens",
        "uniform:min=100,max=300",
        "--replica-profile",
        "h100-qwen2.5-7b:1,a6000-qwen2.5-7b:3",
        "--router",
        "least-requests",
    ]);
    let rows = v["replicas"].as_array().expect("replica rows");
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["profile"], "h100-qwen2.5-7b");
    assert_eq!(rows[3]["profile"], "a6000-qwen2.5-7b");
    let served: Vec<u64> = rows
        .iter()
        .map(|r| r["requests"].as_u64().expect("n"))
        .collect();
    assert_eq!(served.iter().sum::<u64>(), 600);
    assert_eq!(v["requests"], 600);
    // The H100 is about four times as fast: the router's in-flight counts send it the most.
    assert!(served[1..].iter().all(|&n| n < served[0]), "{served:?}");
    assert_eq!(v["router"]["policy"], "least-requests");
    assert_eq!(v["router"]["rejected"], 0);
}

#[test]
fn admission_refuses_with_429_and_bad_fleet_flags_are_named() {
    let v = json(&[
        "simulate",
        "--format",
        "json",
        "--arrival",
        "constant",
        "--rate",
        "50",
        "--requests",
        "200",
        "--replicas",
        "2",
        "--admission",
        "token-bucket:rate=10,burst=5",
    ]);
    let rejected = v["router"]["rejected"].as_u64().expect("rejected");
    // 200 requests over 4 s; the bucket lets about 5 + 10/s through.
    assert!((150..=160).contains(&rejected), "{rejected}");
    assert_eq!(v["errors"].as_u64(), Some(rejected));

    for (args, needle) in [
        (&["--replicas", "2"][..], "drills run on one server"),
        (
            &["--arrival", "poisson", "--router", "random"][..],
            "unknown router 'random'",
        ),
        (
            &["--arrival", "poisson", "--admission", "queue:0"][..],
            "queue bound",
        ),
        (&["--arrival", "weekly"][..], "unknown arrival process"),
        (
            &["--arrival", "poisson", "--input-tokens", "pareto:a=1"][..],
            "bad token distribution",
        ),
        (
            &[
                "--arrival",
                "poisson",
                "--replica-profile",
                "h100-qwen2.5-7b:x",
            ][..],
            "not a count",
        ),
    ] {
        let mut a = vec!["simulate"];
        a.extend_from_slice(args);
        let out = servesim(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
