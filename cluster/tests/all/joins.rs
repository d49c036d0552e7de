//! Two keyed streams meet: the interval join matches exactly the pairs a
//! brute-force model finds, at any parallelism.

use flinkw_tests::artifacts;

use crate::flinkw;

fn events(seed: u64, n: usize, start: i64) -> Vec<(i64, String, i64)> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let jitter = ((s >> 33) % 500) as i64;
            (
                start + i as i64 * 97 - jitter,
                format!("k{}", (s >> 50) % 13),
                (s >> 40) as i64 % 1000,
            )
        })
        .collect()
}

fn csv(dir: &std::path::Path, name: &str, events: &[(i64, String, i64)]) -> String {
    let mut s = String::from("ts,key,value\n");
    for (t, k, v) in events {
        s.push_str(&format!("{t},{k},{v}\n"));
    }
    let path = dir.join(name);
    std::fs::write(&path, s).unwrap();
    path.display().to_string()
}

#[test]
fn window_join_pairs_records_of_the_same_window() {
    let dir = tempfile::tempdir().unwrap();
    let orders = events(3, 600, 1_000_000);
    let shipments = events(4, 600, 1_001_000);
    let window = 5_000;
    let start = |t: i64| t - t.rem_euclid(window);
    let mut expected = Vec::new();
    for (to, ko, _) in &orders {
        for (ts, ks, _) in &shipments {
            if ko == ks && start(*to) == start(*ts) {
                expected.push(format!("{ko},{},{to},{ts}", start(*to)));
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 1000, "{} pairs", expected.len());
    let run = flinkw(
        &[
            "run",
            artifacts::INTERVAL_JOIN,
            "--set",
            &format!("orders={}", csv(dir.path(), "orders.csv", &orders)),
            "--set",
            &format!("shipments={}", csv(dir.path(), "shipments.csv", &shipments)),
            "--set",
            "join=window",
            "--set",
            "window-ms=5000",
            "--set",
            "parallelism=2",
        ],
        dir.path(),
    );
    assert!(run.ok(), "{}", run.stderr);
    let got = run.sorted_lines();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "different pairs");
}

#[test]
fn interval_join_matches_every_pair_in_the_interval() {
    let dir = tempfile::tempdir().unwrap();
    let orders = events(1, 800, 1_000_000);
    let shipments = events(2, 800, 1_002_000);
    let mut expected = Vec::new();
    for (to, ko, vo) in &orders {
        for (ts, ks, vs) in &shipments {
            if ko == ks && *ts >= *to && *ts <= to + 5_000 {
                expected.push(format!("{ko},{to},{ts},{vo},{vs}"));
            }
        }
    }
    expected.sort();
    assert!(expected.len() > 500, "{} pairs", expected.len());
    let set_orders = format!("orders={}", csv(dir.path(), "orders.csv", &orders));
    let set_shipments = format!("shipments={}", csv(dir.path(), "shipments.csv", &shipments));
    for p in ["1", "3"] {
        let run = flinkw(
            &[
                "run",
                artifacts::INTERVAL_JOIN,
                "--set",
                &set_orders,
                "--set",
                &set_shipments,
                "--set",
                &format!("parallelism={p}"),
            ],
            dir.path(),
        );
        assert!(run.ok(), "{}", run.stderr);
        let got = run.sorted_lines();
        assert_eq!(got.len(), expected.len(), "parallelism {p}");
        assert!(got == expected, "parallelism {p}: different pairs");
    }
}
