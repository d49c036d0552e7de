//! The `nexmark` source: the Nexmark benchmark's persons, auctions and bids,
//! made as the reference generator makes them (the `nexmark/nexmark`
//! project's `NexmarkGenerator`, itself a port of Beam's Nexmark
//! `Generator`), deterministic for a seed.
//!
//! Event `n` (counting from 0 over the whole source) is made from `n` and
//! the seed alone, so subtask `i` of `p` makes events `i, i + p, ...` and the
//! set of events does not depend on the parallelism (as with `datagen`).
//!
//! What follows the reference exactly, with its default configuration:
//!
//! - **kinds**: of every 50 consecutive event numbers, the first is a person,
//!   the next 3 auctions and the last 46 bids (`personProportion` 1,
//!   `auctionProportion` 3, `bidProportion` 46);
//! - **ids**: persons and auctions are numbered from 1000 in the order they
//!   are made (`lastBase0PersonId`, `lastBase0AuctionId`);
//! - **skew**: an auction's seller is one of every 100th person ("hot
//!   sellers") with probability 3/4, else a recent person (one of the last
//!   1,000, or up to 10 not yet made); a bid's auction is one of every 100th
//!   auction with probability 1/2, else one of the last 100 auctions (or up
//!   to 10 not yet made); a bid's bidder is a hot bidder (every 100th person,
//!   plus one) with probability 3/4, else a recent person;
//! - **prices**: `round(10^(6u) × 100)` for `u` uniform in [0, 1)
//!   (log-uniform from 100 to 10^8); an auction's reserve is its initial bid
//!   plus another price; category 10–14 uniform;
//! - **time**: event `n` happens at `base-time + n × (10^6 / event-rate) µs`
//!   (ms, rounded down); an auction expires 1 ms to twice "the time 100
//!   auctions take" after it starts;
//! - **strings**: person names, emails, credit cards, cities and states from
//!   the reference's lists and shapes; `extra` pads each event to the
//!   reference's average sizes (person 200, auction 500, bid 100 bytes).
//!
//! What differs: the reference draws from an unseeded `SplittableRandom`
//! shared by all events; here each event has its own SplitMix64 stream (the
//! algorithm of Java's `SplittableRandom`) seeded from the seed and `n`, so a
//! run can be repeated and split. Bounded draws use a multiply-shift instead
//! of Java's rejection loop. The reference adds `FIRST_PERSON_ID` to a bid's
//! bidder twice (a slip; Beam adds it once); here it is added once, so
//! bidders are person ids. The channel URLs are made from the channel number
//! instead of a table filled at start-up.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::time::Instant;

use flinkw_batch::BatchBuilder;
use serde::{Deserialize, Serialize};

use super::indexed::{IndexedSplit, Next};
use super::{ConnectorError, Poll, SourceReader, check_options, parse_option};
use crate::checkpoint::SourcePosition;

/// Person events in every [`TOTAL_PROPORTION`] events.
pub const PERSON_PROPORTION: u64 = 1;
/// Auction events in every [`TOTAL_PROPORTION`] events.
pub const AUCTION_PROPORTION: u64 = 3;
/// Bid events in every [`TOTAL_PROPORTION`] events.
pub const BID_PROPORTION: u64 = 46;
/// The length of the cycle of event kinds.
pub const TOTAL_PROPORTION: u64 = PERSON_PROPORTION + AUCTION_PROPORTION + BID_PROPORTION;
/// The id of the first person.
pub const FIRST_PERSON_ID: u64 = 1000;
/// The id of the first auction.
pub const FIRST_AUCTION_ID: u64 = 1000;
/// The first auction category.
pub const FIRST_CATEGORY_ID: u64 = 10;
/// Auction categories: `FIRST_CATEGORY_ID .. FIRST_CATEGORY_ID + NUM_CATEGORIES`.
pub const NUM_CATEGORIES: u64 = 5;
/// Default event time of event 0: 2023-11-14T22:13:20Z, as `datagen` uses.
pub const DEFAULT_BASE_TIME: i64 = 1_700_000_000_000;
/// Default events per event-time second (the reference's `firstEventRate`).
pub const DEFAULT_EVENT_RATE: u64 = 10_000;

// The reference's `NexmarkConfiguration` defaults and generator constants.
const HOT_AUCTION_RATIO: u64 = 2;
const HOT_SELLERS_RATIO: u64 = 4;
const HOT_BIDDERS_RATIO: u64 = 4;
const HOT_AUCTION_EVERY: u64 = 100;
const HOT_SELLER_EVERY: u64 = 100;
const HOT_BIDDER_EVERY: u64 = 100;
const NUM_IN_FLIGHT_AUCTIONS: u64 = 100;
const NUM_ACTIVE_PEOPLE: u64 = 1000;
const PERSON_ID_LEAD: u64 = 10;
const AUCTION_ID_LEAD: u64 = 10;
const AVG_PERSON_BYTES: usize = 200;
const AVG_AUCTION_BYTES: usize = 500;
const AVG_BID_BYTES: usize = 100;
const MIN_STRING_LENGTH: u64 = 3;
const US_STATES: [&str; 6] = ["AZ", "CA", "ID", "OR", "WA", "WY"];
const US_CITIES: [&str; 10] = [
    "Phoenix",
    "Los Angeles",
    "San Francisco",
    "Boise",
    "Portland",
    "Bend",
    "Redmond",
    "Seattle",
    "Kent",
    "Cheyenne",
];
const FIRST_NAMES: [&str; 11] = [
    "Peter", "Paul", "Luke", "John", "Saul", "Vicky", "Kate", "Julie", "Sarah", "Deiter", "Walter",
];
const LAST_NAMES: [&str; 9] =
    ["Shultz", "Abrams", "Spencer", "White", "Bartels", "Walton", "Smith", "Jones", "Noris"];
const HOT_CHANNELS: [&str; 4] = ["Google", "Facebook", "Baidu", "Apple"];
const CHANNELS: u64 = 10_000;

/// A new person (Nexmark's `Person`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Person id, from [`FIRST_PERSON_ID`] on.
    pub id: u64,
    /// "First Last".
    pub name: String,
    /// An email address.
    pub email_address: String,
    /// Four groups of four digits.
    pub credit_card: String,
    /// A US city.
    pub city: String,
    /// A US state (two letters).
    pub state: String,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// Padding to the reference's average size.
    pub extra: String,
}

/// A new auction (Nexmark's `Auction`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id, from [`FIRST_AUCTION_ID`] on.
    pub id: u64,
    /// The item's name.
    pub item_name: String,
    /// The item's description.
    pub description: String,
    /// The opening price.
    pub initial_bid: u64,
    /// The reserve price.
    pub reserve: u64,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// When the auction closes, ms since the epoch.
    pub expires: i64,
    /// The seller's person id.
    pub seller: u64,
    /// Category, [`FIRST_CATEGORY_ID`] to [`FIRST_CATEGORY_ID`] + 4.
    pub category: u64,
    /// Padding to the reference's average size.
    pub extra: String,
}

/// A bid on an auction (Nexmark's `Bid`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bid {
    /// The auction's id.
    pub auction: u64,
    /// The bidder's person id.
    pub bidder: u64,
    /// The price offered.
    pub price: u64,
    /// Where the bid came from.
    pub channel: String,
    /// The URL it came through.
    pub url: String,
    /// Event time, ms since the epoch.
    pub date_time: i64,
    /// Padding to the reference's average size.
    pub extra: String,
}

/// One Nexmark event: the record the `nexmark` source makes, encoded with
/// postcard (variant index 0, 1, 2 as a varint, then the fields in order).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    /// A new person.
    Person(Person),
    /// A new auction.
    Auction(Auction),
    /// A bid.
    Bid(Bid),
}

impl Event {
    /// The event's time, ms since the epoch.
    pub fn date_time(&self) -> i64 {
        match self {
            Event::Person(p) => p.date_time,
            Event::Auction(a) => a.date_time,
            Event::Bid(b) => b.date_time,
        }
    }
}

/// A checked `nexmark` source.
#[derive(Debug, Clone, PartialEq)]
pub struct NexmarkSpec {
    /// Events in all (0 = unbounded).
    pub count: u64,
    /// Events per wall-clock second over all subtasks (0 = as fast as possible).
    pub rate: u64,
    /// The generator's settings.
    pub generator: Generator,
}

/// What makes event `n`: the seed and the event-time settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Generator {
    /// Random seed.
    pub seed: u64,
    /// Events per event-time second.
    pub event_rate: u64,
    /// Event time of event 0, ms since the epoch.
    pub base_time: i64,
    /// Whether to pad events with `extra` to the reference's average sizes.
    pub extra: bool,
}

impl Default for Generator {
    fn default() -> Self {
        Generator {
            seed: 42,
            event_rate: DEFAULT_EVENT_RATE,
            base_time: DEFAULT_BASE_TIME,
            extra: true,
        }
    }
}

/// The source's options, as `docs/connectors.md` lists them.
pub const OPTIONS: [&str; 6] = ["count", "rate", "seed", "event-rate", "base-time", "extra"];

impl NexmarkSpec {
    /// Checks the options of a `nexmark` source.
    pub fn new(options: &BTreeMap<String, String>) -> Result<Self, ConnectorError> {
        const NAME: &str = "nexmark source";
        check_options(NAME, options, &OPTIONS)?;
        let defaults = Generator::default();
        let bad = |option: &str, reason: &str| ConnectorError::BadOption {
            connector: NAME.into(),
            option: option.into(),
            value: options.get(option).cloned().unwrap_or_default(),
            reason: reason.into(),
        };
        let event_rate = parse_option(NAME, options, "event-rate", defaults.event_rate)?;
        if event_rate == 0 || event_rate > 1_000_000_000 {
            return Err(bad("event-rate", "expected 1 to 1,000,000,000 events per second"));
        }
        let extra = match options.get("extra").map(String::as_str) {
            None | Some("true") => true,
            Some("false") => false,
            Some(_) => return Err(bad("extra", "expected true or false")),
        };
        Ok(NexmarkSpec {
            count: parse_option(NAME, options, "count", 0)?,
            rate: parse_option(NAME, options, "rate", 0)?,
            generator: Generator {
                seed: parse_option(NAME, options, "seed", defaults.seed)?,
                event_rate,
                base_time: parse_option(NAME, options, "base-time", defaults.base_time)?,
                extra,
            },
        })
    }

    /// Opens the reader of subtask `index` of `parallelism`.
    pub fn open(&self, index: u32, parallelism: u32) -> Box<dyn SourceReader> {
        let split = IndexedSplit::new(index, parallelism, self.count, self.rate);
        Box::new(NexmarkReader { spec: self.clone(), split, buf: Vec::with_capacity(1024) })
    }
}

impl Generator {
    /// The event time of event number `n`.
    pub fn timestamp(&self, n: u64) -> i64 {
        let delay_us = 1_000_000.0 / self.event_rate as f64;
        self.base_time + ((n as f64 * delay_us) as i64) / 1000
    }

    /// Event `n`.
    pub fn event(&self, n: u64) -> Event {
        let mut rng = Rng::for_event(self.seed, n);
        let ts = self.timestamp(n);
        let rem = n % TOTAL_PROPORTION;
        if rem < PERSON_PROPORTION {
            Event::Person(self.person(n, &mut rng, ts))
        } else if rem < PERSON_PROPORTION + AUCTION_PROPORTION {
            Event::Auction(self.auction(n, &mut rng, ts))
        } else {
            Event::Bid(self.bid(n, &mut rng, ts))
        }
    }

    fn person(&self, n: u64, rng: &mut Rng, ts: i64) -> Person {
        let id = last_base0_person_id(n) + FIRST_PERSON_ID;
        let name = format!(
            "{} {}",
            FIRST_NAMES[rng.below(FIRST_NAMES.len() as u64) as usize],
            LAST_NAMES[rng.below(LAST_NAMES.len() as u64) as usize]
        );
        let email_address = format!("{}@{}.com", rng.string(7, ' '), rng.string(5, ' '));
        let credit_card =
            (0..4).map(|_| format!("{:04}", rng.below(10_000))).collect::<Vec<_>>().join(" ");
        let city = US_CITIES[rng.below(US_CITIES.len() as u64) as usize].to_owned();
        let state = US_STATES[rng.below(US_STATES.len() as u64) as usize].to_owned();
        let size =
            8 + name.len() + email_address.len() + credit_card.len() + city.len() + state.len();
        let extra = self.extra(rng, size, AVG_PERSON_BYTES);
        Person { id, name, email_address, credit_card, city, state, date_time: ts, extra }
    }

    fn auction(&self, n: u64, rng: &mut Rng, ts: i64) -> Auction {
        let id = last_base0_auction_id(n) + FIRST_AUCTION_ID;
        let seller = if rng.below(HOT_SELLERS_RATIO) > 0 {
            (last_base0_person_id(n) / HOT_SELLER_EVERY) * HOT_SELLER_EVERY
        } else {
            next_base0_person_id(n, rng)
        } + FIRST_PERSON_ID;
        let category = FIRST_CATEGORY_ID + rng.below(NUM_CATEGORIES);
        let initial_bid = rng.price();
        // The reference's nextAuctionLengthMs: up to twice the time that the
        // events of NUM_IN_FLIGHT_AUCTIONS auctions take.
        let events_for_auctions = NUM_IN_FLIGHT_AUCTIONS * TOTAL_PROPORTION / AUCTION_PROPORTION;
        let horizon = self.timestamp(n + events_for_auctions) - ts;
        let expires = ts + 1 + rng.below((horizon * 2).max(1) as u64) as i64;
        let item_name = rng.string(20, ' ');
        let description = rng.string(100, ' ');
        let reserve = initial_bid + rng.price();
        let size = 8 + item_name.len() + description.len() + 8 + 8 + 8 + 8 + 8;
        let extra = self.extra(rng, size, AVG_AUCTION_BYTES);
        Auction {
            id,
            item_name,
            description,
            initial_bid,
            reserve,
            date_time: ts,
            expires,
            seller,
            category,
            extra,
        }
    }

    fn bid(&self, n: u64, rng: &mut Rng, ts: i64) -> Bid {
        let auction = if rng.below(HOT_AUCTION_RATIO) > 0 {
            (last_base0_auction_id(n) / HOT_AUCTION_EVERY) * HOT_AUCTION_EVERY
        } else {
            next_base0_auction_id(n, rng)
        } + FIRST_AUCTION_ID;
        let bidder = if rng.below(HOT_BIDDERS_RATIO) > 0 {
            (last_base0_person_id(n) / HOT_BIDDER_EVERY) * HOT_BIDDER_EVERY + 1
        } else {
            next_base0_person_id(n, rng)
        } + FIRST_PERSON_ID;
        let price = rng.price();
        let (channel, url) = if rng.below(2) > 0 {
            let i = rng.below(HOT_CHANNELS.len() as u64) as usize;
            (HOT_CHANNELS[i].to_owned(), hot_urls()[i].clone())
        } else {
            channel_and_url(rng.below(CHANNELS))
        };
        let extra = self.extra(rng, 8 + 8 + 8 + 8, AVG_BID_BYTES);
        Bid { auction, bidder, price, channel, url, date_time: ts, extra }
    }

    /// The reference's `nextExtra`: a slice of a fixed random text that
    /// brings the event to about `average` bytes (±20 %).
    fn extra(&self, rng: &mut Rng, size: usize, average: usize) -> String {
        if !self.extra || size > average {
            return String::new();
        }
        let rest = average - size;
        let delta = (rest as f64 * 0.2).round() as u64;
        let len = rest as u64 - delta + if delta == 0 { 0 } else { rng.below(2 * delta) };
        let text = extra_text();
        let at = rng.below((text.len() as u64 - len).max(1)) as usize;
        text[at..at + len as usize].to_owned()
    }
}

/// The reference's `lastBase0PersonId`: the newest person at event `n`.
pub fn last_base0_person_id(n: u64) -> u64 {
    let epoch = n / TOTAL_PROPORTION;
    let offset = n % TOTAL_PROPORTION;
    let offset = if offset >= PERSON_PROPORTION { PERSON_PROPORTION - 1 } else { offset };
    epoch * PERSON_PROPORTION + offset
}

/// The reference's `lastBase0AuctionId`: the newest auction at event `n`
/// (it wraps below 0 before the first auction, as in the reference).
pub fn last_base0_auction_id(n: u64) -> u64 {
    let mut epoch = n / TOTAL_PROPORTION;
    let mut offset = n % TOTAL_PROPORTION;
    if offset < PERSON_PROPORTION {
        epoch = epoch.wrapping_sub(1);
        offset = AUCTION_PROPORTION - 1;
    } else if offset >= PERSON_PROPORTION + AUCTION_PROPORTION {
        offset = AUCTION_PROPORTION - 1;
    } else {
        offset -= PERSON_PROPORTION;
    }
    epoch.wrapping_mul(AUCTION_PROPORTION).wrapping_add(offset)
}

fn next_base0_person_id(n: u64, rng: &mut Rng) -> u64 {
    let people = last_base0_person_id(n) + 1;
    let active = people.min(NUM_ACTIVE_PEOPLE);
    people - active + rng.below(active + PERSON_ID_LEAD)
}

fn next_base0_auction_id(n: u64, rng: &mut Rng) -> u64 {
    let max = last_base0_auction_id(n);
    let min = max.saturating_sub(NUM_IN_FLIGHT_AUCTIONS);
    min + rng.below(max - min + 1 + AUCTION_ID_LEAD)
}

fn base_url(rng: &mut Rng) -> String {
    format!(
        "https://www.nexmark.com/{}/{}/{}/item.htm?query=1",
        rng.string(5, '_'),
        rng.string(5, '_'),
        rng.string(5, '_')
    )
}

/// The URLs of the four hot channels.
fn hot_urls() -> &'static [String; 4] {
    static URLS: OnceLock<[String; 4]> = OnceLock::new();
    URLS.get_or_init(|| {
        let mut rng = Rng { state: 0x6e65_786d_6172_6b00 };
        std::array::from_fn(|_| base_url(&mut rng))
    })
}

/// Channel `i` and its URL (the reference's `CHANNEL_URL_CACHE` entry).
fn channel_and_url(i: u64) -> (String, String) {
    let mut rng = Rng::for_event(0x6368_616e_6e65_6c73, i);
    let mut url = base_url(&mut rng);
    if rng.below(10) > 0 {
        url.push_str(&format!("&channel_id={}", (i as i32).reverse_bits().unsigned_abs()));
    }
    (format!("channel-{i}"), url)
}

/// A fixed random lower-case text that `extra` fields are cut from.
fn extra_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let mut rng = Rng { state: 0x6578_7472_6100_0000 };
        (0..64 * 1024).map(|_| (b'a' + rng.below(26) as u8) as char).collect()
    })
}

/// SplitMix64, the algorithm of Java's `SplittableRandom`.
struct Rng {
    state: u64,
}

const GOLDEN_GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Rng {
    /// The stream of event `n` under `seed`.
    fn for_event(seed: u64, n: u64) -> Self {
        Rng { state: mix64(seed ^ mix64(n.wrapping_mul(GOLDEN_GAMMA))) }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN_GAMMA);
        mix64(self.state)
    }

    /// Uniform in `0..bound` (`bound` ≥ 1).
    fn below(&mut self, bound: u64) -> u64 {
        ((self.next_u64() as u128 * bound as u128) >> 64) as u64
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// The reference's `nextPrice`.
    fn price(&mut self) -> u64 {
        (10f64.powf(self.unit() * 6.0) * 100.0).round() as u64
    }

    /// The reference's `nextString`: 3 to `max - 1` letters, each one
    /// `special` with probability 1/13, trimmed of spaces.
    fn string(&mut self, max: u64, special: char) -> String {
        let len = MIN_STRING_LENGTH + self.below(max - MIN_STRING_LENGTH);
        let s: String =
            (0..len)
                .map(|_| {
                    if self.below(13) == 0 {
                        special
                    } else {
                        (b'a' + self.below(26) as u8) as char
                    }
                })
                .collect();
        s.trim().to_owned()
    }
}

struct NexmarkReader {
    spec: NexmarkSpec,
    split: IndexedSplit,
    buf: Vec<u8>,
}

impl SourceReader for NexmarkReader {
    fn position(&self) -> SourcePosition {
        self.split.position()
    }

    fn seek(&mut self, position: &SourcePosition) -> Result<(), ConnectorError> {
        self.split.seek("nexmark source", position)
    }

    fn poll(
        &mut self,
        out: &mut BatchBuilder,
        max: usize,
        deadline: Instant,
    ) -> Result<Poll, ConnectorError> {
        for _ in 0..max {
            let n = match self.split.next_index(deadline) {
                Next::Index(n) => n,
                Next::Wait => return Ok(Poll::More),
                Next::End => return Ok(Poll::End),
            };
            let event = self.spec.generator.event(n);
            self.buf.clear();
            encode(&event, &mut self.buf);
            out.push(event.date_time(), b"", &self.buf);
            self.split.advance();
        }
        Ok(Poll::More)
    }
}

/// Appends the postcard encoding of `event` to `out`.
pub fn encode(event: &Event, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail; the types have no maps or unsized parts.
    if let Ok(bytes) = postcard::to_extend(event, std::mem::take(out)) {
        *out = bytes;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flinkw_batch::Batch;
    use std::time::Duration;

    fn spec(count: u64, seed: u64) -> NexmarkSpec {
        NexmarkSpec { count, rate: 0, generator: Generator { seed, ..Generator::default() } }
    }

    /// Every (timestamp, value) the source makes, subtask by subtask.
    fn read(spec: &NexmarkSpec, parallelism: u32) -> Vec<(i64, Vec<u8>)> {
        let mut all = Vec::new();
        for i in 0..parallelism {
            let mut r = spec.open(i, parallelism);
            loop {
                let mut b = BatchBuilder::new();
                let far = Instant::now() + Duration::from_secs(60);
                let p = r.poll(&mut b, 64, far).unwrap();
                let bytes = b.finish();
                all.extend(
                    Batch::new(&bytes).unwrap().iter().map(|r| (r.timestamp, r.value.to_vec())),
                );
                if p == Poll::End {
                    break;
                }
            }
        }
        all
    }

    #[test]
    fn proportions_are_1_3_46_per_50() {
        let g = Generator::default();
        let mut counts = [0u64; 3];
        for n in 0..50_000 {
            counts[match g.event(n) {
                Event::Person(_) => 0,
                Event::Auction(_) => 1,
                Event::Bid(_) => 2,
            }] += 1;
        }
        assert_eq!(counts, [1_000, 3_000, 46_000]);
        // And within each block of 50: person first, then 3 auctions.
        assert!(matches!(g.event(100), Event::Person(_)));
        assert!(matches!(g.event(103), Event::Auction(_)));
        assert!(matches!(g.event(104), Event::Bid(_)));
    }

    #[test]
    fn ids_are_dense_and_references_point_near_existing_ids() {
        let g = Generator::default();
        let (mut persons, mut auctions) = (Vec::new(), Vec::new());
        let (mut hot_auction, mut hot_bidder, mut hot_seller, mut bids, mut sold) = (0, 0, 0, 0, 0);
        for n in 0..100_000 {
            match g.event(n) {
                Event::Person(p) => persons.push(p.id),
                Event::Auction(a) => {
                    auctions.push(a.id);
                    sold += 1;
                    hot_seller += u64::from((a.seller - FIRST_PERSON_ID).is_multiple_of(100));
                    assert!(a.seller < persons.last().unwrap() + PERSON_ID_LEAD + 1);
                    assert!(a.expires > a.date_time);
                    assert!(a.reserve >= a.initial_bid);
                    assert!((10..15).contains(&a.category));
                }
                Event::Bid(b) => {
                    bids += 1;
                    hot_auction += u64::from((b.auction - FIRST_AUCTION_ID).is_multiple_of(100));
                    hot_bidder += u64::from((b.bidder - FIRST_PERSON_ID) % 100 == 1);
                    assert!(b.auction <= auctions.last().unwrap() + AUCTION_ID_LEAD);
                    assert!((100..=100_000_000).contains(&b.price));
                }
            }
        }
        let expected: Vec<u64> = (FIRST_PERSON_ID..FIRST_PERSON_ID + 2000).collect();
        assert_eq!(persons, expected);
        let expected: Vec<u64> = (FIRST_AUCTION_ID..FIRST_AUCTION_ID + 6000).collect();
        assert_eq!(auctions, expected);
        // Hot shares: 1/2 of bids on hot auctions, 3/4 of bids by hot bidders,
        // 3/4 of auctions by hot sellers (plus the few random hits).
        let share = |x: u64, of: u64| x as f64 / of as f64;
        assert!((0.49..0.53).contains(&share(hot_auction, bids)), "{hot_auction}/{bids}");
        assert!((0.74..0.77).contains(&share(hot_bidder, bids)), "{hot_bidder}/{bids}");
        assert!((0.72..0.78).contains(&share(hot_seller, sold)), "{hot_seller}/{sold}");
    }

    #[test]
    fn timestamps_follow_the_event_rate() {
        let g = Generator { event_rate: 10_000, ..Generator::default() };
        assert_eq!(g.timestamp(0), DEFAULT_BASE_TIME);
        assert_eq!(g.timestamp(9), DEFAULT_BASE_TIME);
        assert_eq!(g.timestamp(10), DEFAULT_BASE_TIME + 1);
        assert_eq!(g.timestamp(10_000), DEFAULT_BASE_TIME + 1000);
        assert_eq!(g.event(12_345).date_time(), DEFAULT_BASE_TIME + 1234);
    }

    #[test]
    fn sizes_are_near_the_reference_averages() {
        let g = Generator::default();
        let mut sums = [(0usize, 0usize); 3];
        let mut buf = Vec::new();
        for n in 0..20_000 {
            let e = g.event(n);
            buf.clear();
            encode(&e, &mut buf);
            let i = match e {
                Event::Person(_) => 0,
                Event::Auction(_) => 1,
                Event::Bid(_) => 2,
            };
            sums[i].0 += buf.len();
            sums[i].1 += 1;
        }
        let avg = |i: usize| sums[i].0 / sums[i].1;
        assert!((150..250).contains(&avg(0)), "person {}", avg(0));
        assert!((400..600).contains(&avg(1)), "auction {}", avg(1));
        assert!((80..180).contains(&avg(2)), "bid {}", avg(2));
    }

    #[test]
    fn deterministic_for_a_seed_and_different_across_seeds() {
        let a = read(&spec(2_000, 7), 1);
        assert_eq!(a, read(&spec(2_000, 7), 1));
        assert_ne!(a, read(&spec(2_000, 8), 1));
        // The record decodes to the generator's event, at the event's time.
        let g = Generator { seed: 7, ..Generator::default() };
        for (n, (ts, bytes)) in a.iter().enumerate() {
            let e: Event = postcard::from_bytes(bytes).unwrap();
            assert_eq!(e, g.event(n as u64));
            assert_eq!(*ts, e.date_time());
        }
    }

    #[test]
    fn same_events_at_any_parallelism() {
        let mut one = read(&spec(3_001, 3), 1);
        let mut three = read(&spec(3_001, 3), 3);
        assert_eq!(one.len(), 3_001);
        one.sort();
        three.sort();
        assert_eq!(one, three);
    }

    #[test]
    fn continues_from_a_position() {
        let all = read(&spec(500, 1), 1);
        let s = spec(500, 1);
        let mut r = s.open(0, 1);
        let mut b = BatchBuilder::new();
        let far = Instant::now() + Duration::from_secs(60);
        r.poll(&mut b, 200, far).unwrap();
        let mut again = s.open(0, 1);
        again.seek(&r.position()).unwrap();
        let mut b = BatchBuilder::new();
        again.poll(&mut b, 1000, far).unwrap();
        let bytes = b.finish();
        let rest: Vec<_> =
            Batch::new(&bytes).unwrap().iter().map(|r| (r.timestamp, r.value.to_vec())).collect();
        assert_eq!(rest, all[200..]);
    }

    #[test]
    fn bad_options_name_the_option() {
        let opts = |kv: &[(&str, &str)]| {
            kv.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()
        };
        let err = |kv: &[(&str, &str)]| NexmarkSpec::new(&opts(kv)).unwrap_err().to_string();
        assert!(err(&[("cout", "5")]).contains("unknown option `cout`"));
        assert!(err(&[("count", "many")]).contains("option `count`"));
        assert!(err(&[("event-rate", "0")]).contains("option `event-rate`"));
        assert!(err(&[("extra", "yes")]).contains("option `extra`"));
        let ok = NexmarkSpec::new(&opts(&[("count", "10"), ("extra", "false")])).unwrap();
        assert_eq!(ok.count, 10);
        assert!(!ok.generator.extra);
    }
}
