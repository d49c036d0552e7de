//! The Nexmark benchmark's events, made by the host's `nexmark` source
//! (`docs/connectors.md`): persons, auctions and bids in the proportions
//! 1 : 3 : 46, deterministic for a seed.
//!
//! ```no_run
//! use flinkw::nexmark::{Event, Nexmark};
//! use flinkw::prelude::*;
//!
//! # fn job(env: &mut Env) -> Result<(), Error> {
//! env.source(Nexmark::events(1_000_000))
//!     .flat_map(|e: Event| match e {
//!         Event::Bid(b) => Some(b.price),
//!         _ => None,
//!     })
//!     .sink(Stdout);
//! # Ok(()) }
//! ```

use serde::{Deserialize, Serialize};

use crate::Source;
use crate::bindings::flinkw::plugin::types::Connector;
use crate::codec::{Decoder, decode_postcard};

/// A new person (Nexmark's `Person`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// Person id, from 1000 on.
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
    /// Padding to the benchmark's average size.
    pub extra: String,
}

/// A new auction (Nexmark's `Auction`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Auction {
    /// Auction id, from 1000 on.
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
    /// Category, 10 to 14.
    pub category: u64,
    /// Padding to the benchmark's average size.
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
    /// Padding to the benchmark's average size.
    pub extra: String,
}

/// One Nexmark event.
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

/// The host's Nexmark generator: `Nexmark::events(count)`.
pub struct Nexmark {
    options: Vec<(String, String)>,
}

impl Nexmark {
    /// `count` events (0 = unbounded), as fast as the job takes them.
    pub fn events(count: u64) -> Self {
        Nexmark { options: vec![("count".into(), count.to_string())] }
    }

    /// Limits the rate to `per_second` events per second (all subtasks together).
    pub fn rate(self, per_second: u64) -> Self {
        self.option("rate", per_second)
    }

    /// Sets the random seed (default 42).
    pub fn seed(self, seed: u64) -> Self {
        self.option("seed", seed)
    }

    /// Events per second of event time (default 10,000, as Nexmark's).
    pub fn event_rate(self, per_second: u64) -> Self {
        self.option("event-rate", per_second)
    }

    /// Event time of the first event, ms since the epoch.
    pub fn base_time(self, ms: i64) -> Self {
        self.option("base-time", ms)
    }

    /// Whether events carry the `extra` padding (default true).
    pub fn extra(self, on: bool) -> Self {
        self.option("extra", on)
    }

    fn option(mut self, key: &str, value: impl ToString) -> Self {
        self.options.push((key.into(), value.to_string()));
        self
    }
}

impl Source for Nexmark {
    type Out = Event;
    fn name(&self) -> String {
        "nexmark".into()
    }
    fn connector(self) -> Connector {
        Connector { kind: "nexmark".into(), options: self.options }
    }
    fn decoder(&self) -> Decoder<Event> {
        decode_postcard::<Event>
    }
    fn values_are_postcard(&self) -> bool {
        true
    }
    fn is_text(&self) -> bool {
        false
    }
}
