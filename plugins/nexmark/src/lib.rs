//! Nexmark queries over the host's `nexmark` source, one per `--set query=`:
//!
//! | query | what | how |
//! |---|---|---|
//! | `q0` | pass-through of bids | `flat_map` |
//! | `q1` | bids with the price in euros (`price × 908 / 1000`, rounded down) | `flat_map` |
//! | `q2` | `(auction, price)` of the bids on every 123rd auction | `flat_map` |
//! | `q3` | local item suggestion: sellers in OR, ID or CA with their auctions in category 10 | keyed process (value + list state), persons ⋈ auctions |
//! | `q4` | average closing price per category | keyed process with an event-time timer at each auction's end, then a running average per category |
//! | `q5` | hot items: the auctions with the most bids in each 10 s window sliding by 2 s | sliding window count, then a keyed process per window with a timer |
//! | `q7` | highest bids of each 10 s tumbling window | tumbling window aggregate |
//! | `q8` | new users: persons who opened an auction in the 10 s window they joined in | tumbling window process over persons and auctions keyed by person |
//!
//! Options: `count` events (default 10,000,000; 0 = unbounded), `seed`,
//! `rate` (events/s), `event-rate` (events per event-time second, default
//! 10,000), `extra` (`false` drops the padding), `output` (`blackhole`,
//! default, or `stdout`: one CSV line per result).
//!
//! ```text
//! flinkw run nexmark.wasm --set query=q5 --set count=1000000
//! ```

use std::time::Duration;

use flinkw::nexmark::{Event, Nexmark};
use flinkw::prelude::*;
use serde::{Deserialize, Serialize};

/// A bid's fields that the queries read (the rest is dropped early).
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct BidRow {
    /// Auction id.
    pub auction: u64,
    /// Bidder id.
    pub bidder: u64,
    /// Price.
    pub price: u64,
    /// Event time, ms.
    pub date_time: i64,
}

fn bid_row(e: Event) -> Option<BidRow> {
    match e {
        Event::Bid(b) => Some(BidRow {
            auction: b.auction,
            bidder: b.bidder,
            price: b.price,
            date_time: b.date_time,
        }),
        _ => None,
    }
}

/// Nexmark q1: the price in euros.
pub fn q1(mut b: BidRow) -> BidRow {
    b.price = b.price * 908 / 1000;
    b
}

/// Nexmark q2: bids on auctions whose id is a multiple of 123.
pub fn q2(b: &BidRow) -> bool {
    b.auction.is_multiple_of(123)
}

/// Where the results go.
#[derive(Clone, Copy, PartialEq)]
enum Output {
    Blackhole,
    Stdout,
}

/// Sinks `stream`: discarded as typed records, or printed by `line`.
fn finish<T: Data>(stream: Stream<T>, output: Output, line: impl Fn(T) -> String + 'static) {
    match output {
        Output::Blackhole => stream.sink(Blackhole),
        Output::Stdout => stream.map(line).sink(Stdout),
    }
}

fn bid_line(b: BidRow) -> String {
    format!("{},{},{},{}", b.auction, b.bidder, b.price, b.date_time)
}

// ---- q3 -------------------------------------------------------------------

/// q3's input: a person of OR/ID/CA or an auction of category 10.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Q3In {
    Person { id: u64, name: String, city: String, state: String },
    Auction { id: u64, seller: u64 },
}

fn q3_input(e: Event) -> Option<Q3In> {
    match e {
        Event::Person(p) if matches!(p.state.as_str(), "OR" | "ID" | "CA") => {
            Some(Q3In::Person { id: p.id, name: p.name, city: p.city, state: p.state })
        }
        Event::Auction(a) if a.category == 10 => Some(Q3In::Auction { id: a.id, seller: a.seller }),
        _ => None,
    }
}

/// The inner join persons ⋈ auctions on `seller = id`: the person is kept;
/// auctions that come before their seller wait in a list.
fn q3(events: Stream<Event>, output: Output) {
    let person = ValueState::<(String, String, String)>::new("q3/person");
    let waiting = ListState::<u64>::new("q3/auctions");
    let joined = events
        .flat_map(q3_input)
        .name("q3-select")
        .key_by(|e: &Q3In| match e {
            Q3In::Person { id, .. } => *id,
            Q3In::Auction { seller, .. } => *seller,
        })
        .process(move |ctx, e: Q3In, out| {
            match e {
                Q3In::Person { name, city, state, .. } => {
                    for id in waiting.get(ctx)? {
                        out.emit((name.clone(), city.clone(), state.clone(), id));
                    }
                    waiting.clear(ctx);
                    person.set(ctx, &(name, city, state))?;
                }
                Q3In::Auction { id, .. } => match person.get(ctx)? {
                    Some((name, city, state)) => out.emit((name, city, state, id)),
                    None => waiting.add(ctx, &id)?,
                },
            }
            Ok(())
        })
        .name("q3-join");
    finish(joined, output, |(name, city, state, id)| format!("{name},{city},{state},{id}"));
}

// ---- q4 -------------------------------------------------------------------

/// q4's input: an auction's window and category, or a bid's price and time.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Q4In {
    Auction { id: u64, category: u64, start: i64, expires: i64 },
    Bid { auction: u64, price: u64, date_time: i64 },
}

/// Closes each auction at its `expires`: the highest bid made between its
/// start and its end (both included), as q4's inner query.
struct CloseAuctions {
    /// (category, start, expires) of the key's auction.
    auction: ValueState<(u64, i64, i64)>,
    /// Bids that came before their auction: (price, time).
    early: ListState<(u64, i64)>,
    /// The highest valid bid so far.
    best: ValueState<u64>,
}

impl KeyedProcessFunction<u64, Q4In, (u64, u64)> for CloseAuctions {
    fn process(
        &mut self,
        ctx: &mut KeyedContext,
        e: Q4In,
        _: &mut Collector<(u64, u64)>,
    ) -> Result<(), Error> {
        match e {
            Q4In::Auction { category, start, expires, .. } => {
                let best = self
                    .early
                    .get(ctx)?
                    .into_iter()
                    .filter(|(_, t)| (start..=expires).contains(t))
                    .map(|(p, _)| p)
                    .max();
                self.early.clear(ctx);
                if let Some(best) = best {
                    self.best.set(ctx, &best)?;
                }
                self.auction.set(ctx, &(category, start, expires))?;
                ctx.register_event_timer(expires);
            }
            Q4In::Bid { price, date_time, .. } => match self.auction.get(ctx)? {
                Some((_, start, expires)) if (start..=expires).contains(&date_time) => {
                    if self.best.get(ctx)?.is_none_or(|b| price > b) {
                        self.best.set(ctx, &price)?;
                    }
                }
                Some(_) => {}
                None => self.early.add(ctx, &(price, date_time))?,
            },
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ctx: &mut KeyedContext,
        _: u64,
        _: i64,
        _: TimeDomain,
        out: &mut Collector<(u64, u64)>,
    ) -> Result<(), Error> {
        if let (Some((category, ..)), Some(best)) = (self.auction.get(ctx)?, self.best.get(ctx)?) {
            out.emit((category, best));
        }
        // Keep the auction (later bids are outside it), drop its price.
        self.best.clear(ctx);
        Ok(())
    }
}

fn q4(events: Stream<Event>, output: Output) {
    let sums = ValueState::<(u64, u64)>::new("q4/sum-count");
    let averages = events
        .watermarks(WatermarkStrategy::monotonous())
        .flat_map(|e: Event| match e {
            Event::Auction(a) => Some(Q4In::Auction {
                id: a.id,
                category: a.category,
                start: a.date_time,
                expires: a.expires,
            }),
            Event::Bid(b) => {
                Some(Q4In::Bid { auction: b.auction, price: b.price, date_time: b.date_time })
            }
            Event::Person(_) => None,
        })
        .name("q4-select")
        .key_by(|e: &Q4In| match e {
            Q4In::Auction { id, .. } => *id,
            Q4In::Bid { auction, .. } => *auction,
        })
        .process_fn(CloseAuctions {
            auction: ValueState::new("q4/auction"),
            early: ListState::new("q4/early"),
            best: ValueState::new("q4/best"),
        })
        .name("q4-close-auctions")
        .key_by(|(category, _): &(u64, u64)| *category)
        .process(move |ctx, (category, price): (u64, u64), out| {
            let (sum, count) = sums.get(ctx)?.unwrap_or((0, 0));
            let (sum, count) = (sum + price, count + 1);
            sums.set(ctx, &(sum, count))?;
            out.emit((category, sum / count, count));
            Ok(())
        })
        .name("q4-average");
    finish(averages, output, |(c, avg, n)| format!("{c},{avg},{n}"));
}

// ---- q5 -------------------------------------------------------------------

/// COUNT(*).
struct Count;

impl AggregateFunction<BidRow> for Count {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, _: &BidRow) {
        *acc += 1;
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
    fn result(&self, acc: u64) -> u64 {
        acc
    }
}

/// Per window start: the highest count and the auctions that have it,
/// emitted when the watermark passes the window's end.
struct HotItems {
    best: ValueState<(u64, Vec<u64>)>,
}

impl KeyedProcessFunction<i64, (i64, u64, u64), (i64, u64, u64)> for HotItems {
    fn process(
        &mut self,
        ctx: &mut KeyedContext,
        (_, auction, count): (i64, u64, u64),
        _: &mut Collector<(i64, u64, u64)>,
    ) -> Result<(), Error> {
        let (max, mut auctions) = self.best.get(ctx)?.unwrap_or((0, Vec::new()));
        if count > max {
            self.best.set(ctx, &(count, vec![auction]))?;
        } else if count == max {
            auctions.push(auction);
            self.best.set(ctx, &(max, auctions))?;
        }
        if let Some(t) = ctx.timestamp() {
            ctx.register_event_timer(t);
        }
        Ok(())
    }

    fn on_timer(
        &mut self,
        ctx: &mut KeyedContext,
        start: i64,
        _: i64,
        _: TimeDomain,
        out: &mut Collector<(i64, u64, u64)>,
    ) -> Result<(), Error> {
        if let Some((count, auctions)) = self.best.get(ctx)? {
            for a in auctions {
                out.emit((start, a, count));
            }
        }
        self.best.clear(ctx);
        Ok(())
    }
}

fn q5(events: Stream<Event>, output: Output) {
    let hot = events
        .watermarks(WatermarkStrategy::monotonous())
        .flat_map(bid_row)
        .key_by(|b: &BidRow| b.auction)
        .window(Sliding::of(Duration::from_secs(10), Duration::from_secs(2)))
        .aggregate_with(Count, |auction, w, n| (w.start, auction, n))
        .name("q5-count")
        .key_by(|(start, ..): &(i64, u64, u64)| *start)
        .process_fn(HotItems { best: ValueState::new("q5/best") })
        .name("q5-hot-items");
    finish(hot, output, |(start, auction, n)| format!("{start},{auction},{n}"));
}

// ---- q7 -------------------------------------------------------------------

/// The highest price of a window and every bid at that price.
struct MaxBids;

impl AggregateFunction<BidRow> for MaxBids {
    type Acc = (u64, Vec<BidRow>);
    type Out = Vec<BidRow>;
    fn create_accumulator(&self) -> Self::Acc {
        (0, Vec::new())
    }
    fn add(&self, acc: &mut Self::Acc, b: &BidRow) {
        if b.price > acc.0 {
            *acc = (b.price, vec![*b]);
        } else if b.price == acc.0 {
            acc.1.push(*b);
        }
    }
    fn merge(&self, a: Self::Acc, b: Self::Acc) -> Self::Acc {
        match a.0.cmp(&b.0) {
            std::cmp::Ordering::Greater => a,
            std::cmp::Ordering::Less => b,
            std::cmp::Ordering::Equal => (a.0, [a.1, b.1].concat()),
        }
    }
    fn result(&self, acc: Self::Acc) -> Vec<BidRow> {
        acc.1
    }
}

fn q7(events: Stream<Event>, output: Output) {
    let highest = events
        .watermarks(WatermarkStrategy::monotonous())
        .flat_map(bid_row)
        .key_by(|_: &BidRow| 0u8)
        .window(Tumbling::of(Duration::from_secs(10)))
        .aggregate_with(MaxBids, |_, w, bids| (w.start, bids))
        .name("q7-highest-bid")
        .flat_map(|(start, bids): (i64, Vec<BidRow>)| bids.into_iter().map(move |b| (start, b)));
    finish(highest, output, |(start, b)| format!("{start},{}", bid_line(b)));
}

// ---- q8 -------------------------------------------------------------------

/// q8's input: a person (id, name) or an auction's seller.
#[derive(Debug, Clone, Serialize, Deserialize)]
enum Q8In {
    Person { id: u64, name: String },
    Auction { seller: u64 },
}

fn q8(events: Stream<Event>, output: Output) {
    let new_sellers = events
        .watermarks(WatermarkStrategy::monotonous())
        .flat_map(|e: Event| match e {
            Event::Person(p) => Some(Q8In::Person { id: p.id, name: p.name }),
            Event::Auction(a) => Some(Q8In::Auction { seller: a.seller }),
            Event::Bid(_) => None,
        })
        .name("q8-select")
        .key_by(|e: &Q8In| match e {
            Q8In::Person { id, .. } => *id,
            Q8In::Auction { seller } => *seller,
        })
        .window(Tumbling::of(Duration::from_secs(10)))
        .process(|id, w, items: Vec<Q8In>| {
            let sold = items.iter().any(|e| matches!(e, Q8In::Auction { .. }));
            items
                .into_iter()
                .filter_map(|e| match e {
                    Q8In::Person { name, .. } if sold => Some((id, name, w.start)),
                    _ => None,
                })
                .collect()
        })
        .name("q8-window-join");
    finish(new_sellers, output, |(id, name, start)| format!("{id},{name},{start}"));
}

fn job(env: &mut Env) -> Result<(), Error> {
    let config = env.config();
    let query = config.require("query")?;
    let count: u64 = config.parse_or("count", 10_000_000)?;
    let seed: u64 = config.parse_or("seed", 42)?;
    let rate: u64 = config.parse_or("rate", 0)?;
    let event_rate: u64 = config.parse_or("event-rate", 10_000)?;
    let extra: bool = config.parse_or("extra", true)?;
    let output = match config.get("output").unwrap_or("blackhole") {
        "blackhole" => Output::Blackhole,
        "stdout" => Output::Stdout,
        other => {
            return Err(Error::msg(format!("output {other:?}: expected blackhole or stdout")));
        }
    };
    env.set_name(&format!("nexmark-{query}"));
    let events = env
        .source(Nexmark::events(count).seed(seed).rate(rate).event_rate(event_rate).extra(extra));
    match query.as_str() {
        "q0" => finish(events.flat_map(bid_row).name("q0-bids"), output, bid_line),
        "q1" => finish(events.flat_map(bid_row).map(q1).name("q1-euros"), output, bid_line),
        "q2" => finish(
            events.flat_map(bid_row).filter(q2).map(|b: BidRow| (b.auction, b.price)).name("q2"),
            output,
            |(a, p)| format!("{a},{p}"),
        ),
        "q3" => q3(events, output),
        "q4" => q4(events, output),
        "q5" => q5(events, output),
        "q7" => q7(events, output),
        "q8" => q8(events, output),
        other => {
            return Err(Error::msg(format!(
                "query {other:?}: expected one of q0, q1, q2, q3, q4, q5, q7, q8"
            )));
        }
    }
    Ok(())
}

flinkw::export_job!(job);
