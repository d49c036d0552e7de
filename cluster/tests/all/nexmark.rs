//! Nexmark queries (`plugins/nexmark`) on the host's `nexmark` source: each
//! query's output equals what plain Rust computes over the same generator's
//! events (the host's generator module, called here as a library).

use std::collections::{BTreeMap, BTreeSet};

use flinkw_host::connector::nexmark::{Auction, Bid, Event, Generator, Person};
use flinkw_tests::artifacts;

use crate::{assert_fails_with, flinkw};

const COUNT: u64 = 30_000;
const SEED: u64 = 7;
/// Events per event-time second: 30,000 events span 30 s, so the 10 s
/// windows of q5, q7 and q8 fire several times.
const EVENT_RATE: u64 = 1_000;

fn events() -> Vec<Event> {
    let g = Generator { seed: SEED, event_rate: EVENT_RATE, extra: false, ..Generator::default() };
    (0..COUNT).map(|n| g.event(n)).collect()
}

fn bids(events: &[Event]) -> impl Iterator<Item = &Bid> {
    events.iter().filter_map(|e| if let Event::Bid(b) = e { Some(b) } else { None })
}

fn persons(events: &[Event]) -> impl Iterator<Item = &Person> {
    events.iter().filter_map(|e| if let Event::Person(p) = e { Some(p) } else { None })
}

fn auctions(events: &[Event]) -> impl Iterator<Item = &Auction> {
    events.iter().filter_map(|e| if let Event::Auction(a) = e { Some(a) } else { None })
}

/// Runs `query` at `parallelism` and returns its sorted output lines.
fn run_query(query: &str, parallelism: u32) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    let run = flinkw(
        &[
            "run",
            artifacts::NEXMARK,
            "--set",
            &format!("query={query}"),
            "--set",
            &format!("count={COUNT}"),
            "--set",
            &format!("seed={SEED}"),
            "--set",
            &format!("event-rate={EVENT_RATE}"),
            "--set",
            "extra=false",
            "--set",
            "output=stdout",
            "--set",
            &format!("parallelism={parallelism}"),
        ],
        dir.path(),
    );
    assert!(run.ok(), "{query} failed:\n{}", run.stderr);
    run.sorted_lines()
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn bid_line(b: &Bid, price: u64) -> String {
    format!("{},{},{},{}", b.auction, b.bidder, price, b.date_time)
}

#[test]
fn q0_passes_every_bid() {
    let events = events();
    let expected = sorted(bids(&events).map(|b| bid_line(b, b.price)).collect());
    assert_eq!(expected.len() as u64, COUNT / 50 * 46);
    assert_eq!(run_query("q0", 2), expected);
}

#[test]
fn q1_converts_prices() {
    let events = events();
    let expected = sorted(bids(&events).map(|b| bid_line(b, b.price * 908 / 1000)).collect());
    assert_eq!(run_query("q1", 1), expected);
}

#[test]
fn q2_selects_every_123rd_auction() {
    let events = events();
    let expected = sorted(
        bids(&events)
            .filter(|b| b.auction.is_multiple_of(123))
            .map(|b| format!("{},{}", b.auction, b.price))
            .collect(),
    );
    assert!(!expected.is_empty());
    assert_eq!(run_query("q2", 2), expected);
}

#[test]
fn q3_joins_local_sellers_with_their_auctions() {
    let events = events();
    let local: BTreeMap<u64, &Person> = persons(&events)
        .filter(|p| ["OR", "ID", "CA"].contains(&p.state.as_str()))
        .map(|p| (p.id, p))
        .collect();
    let expected = sorted(
        auctions(&events)
            .filter(|a| a.category == 10)
            .filter_map(|a| {
                let p = local.get(&a.seller)?;
                Some(format!("{},{},{},{}", p.name, p.city, p.state, a.id))
            })
            .collect(),
    );
    assert!(expected.len() > 20, "{} results", expected.len());
    assert_eq!(run_query("q3", 2), expected);
}

#[test]
fn q4_averages_closing_prices_per_category() {
    let events = events();
    let mut best: BTreeMap<u64, u64> = BTreeMap::new();
    let all: Vec<&Auction> = auctions(&events).collect();
    let by_id: BTreeMap<u64, &Auction> = all.iter().map(|a| (a.id, *a)).collect();
    for b in bids(&events) {
        if let Some(a) = by_id.get(&b.auction)
            && (a.date_time..=a.expires).contains(&b.date_time)
        {
            let m = best.entry(a.id).or_default();
            *m = (*m).max(b.price);
        }
    }
    let mut per_category: BTreeMap<u64, (u64, u64)> = BTreeMap::new();
    for (id, price) in &best {
        let e = per_category.entry(by_id[id].category).or_default();
        e.0 += price;
        e.1 += 1;
    }
    let expected: Vec<String> =
        per_category.iter().map(|(c, (sum, n))| format!("{c},{},{n}", sum / n)).collect();
    assert_eq!(expected.len(), 5);
    // Each line is a running average `category,avg,count`; the final one
    // per category has the largest count.
    let mut last: BTreeMap<u64, (u64, String)> = BTreeMap::new();
    for line in run_query("q4", 2) {
        let f: Vec<u64> = line.split(',').map(|x| x.parse().unwrap()).collect();
        let e = last.entry(f[0]).or_insert((0, String::new()));
        if f[2] > e.0 {
            *e = (f[2], line.clone());
        }
    }
    let got: Vec<String> = last.into_values().map(|(_, l)| l).collect();
    assert_eq!(got, expected);
}

/// Window starts (ms) of the sliding windows of `size` and `slide` that hold `t`.
fn window_starts(t: i64, size: i64, slide: i64) -> Vec<i64> {
    let last = t - t.rem_euclid(slide);
    (0..size / slide).map(|i| last - i * slide).collect()
}

#[test]
fn q5_finds_the_hottest_auctions_of_each_sliding_window() {
    let events = events();
    let mut counts: BTreeMap<(i64, u64), u64> = BTreeMap::new();
    for b in bids(&events) {
        for start in window_starts(b.date_time, 10_000, 2_000) {
            *counts.entry((start, b.auction)).or_default() += 1;
        }
    }
    let mut max: BTreeMap<i64, u64> = BTreeMap::new();
    for ((start, _), n) in &counts {
        let m = max.entry(*start).or_default();
        *m = (*m).max(*n);
    }
    let expected = sorted(
        counts
            .iter()
            .filter(|((start, _), n)| max[start] == **n)
            .map(|((start, auction), n)| format!("{start},{auction},{n}"))
            .collect(),
    );
    assert!(max.len() >= 15, "{} windows", max.len());
    assert_eq!(run_query("q5", 2), expected);
}

#[test]
fn q7_finds_the_highest_bids_of_each_tumbling_window() {
    let events = events();
    let mut best: BTreeMap<i64, (u64, Vec<&Bid>)> = BTreeMap::new();
    for b in bids(&events) {
        let start = b.date_time - b.date_time.rem_euclid(10_000);
        let e = best.entry(start).or_insert((0, Vec::new()));
        if b.price > e.0 {
            *e = (b.price, vec![b]);
        } else if b.price == e.0 {
            e.1.push(b);
        }
    }
    let expected = sorted(
        best.iter()
            .flat_map(|(start, (_, bs))| {
                bs.iter().map(move |b| format!("{start},{}", bid_line(b, b.price)))
            })
            .collect(),
    );
    assert!(best.len() >= 3);
    assert_eq!(run_query("q7", 1), expected);
}

#[test]
fn q8_finds_persons_who_sold_in_the_window_they_joined() {
    let events = events();
    let start = |t: i64| t - t.rem_euclid(10_000);
    let sellers: BTreeSet<(u64, i64)> =
        auctions(&events).map(|a| (a.seller, start(a.date_time))).collect();
    let expected = sorted(
        persons(&events)
            .filter(|p| sellers.contains(&(p.id, start(p.date_time))))
            .map(|p| format!("{},{},{}", p.id, p.name, start(p.date_time)))
            .collect(),
    );
    assert!(expected.len() > 20, "{} new sellers", expected.len());
    assert_eq!(run_query("q8", 2), expected);
}

#[test]
fn unknown_query_and_bad_source_options_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = flinkw(&["run", artifacts::NEXMARK, "--set", "query=q6"], dir.path());
    assert_fails_with(&run, &["query \"q6\"", "q0, q1, q2, q3, q4, q5, q7, q8"]);
    let run = flinkw(
        &["run", artifacts::NEXMARK, "--set", "query=q0", "--set", "event-rate=0"],
        dir.path(),
    );
    assert_fails_with(&run, &["nexmark source", "event-rate"]);
}
