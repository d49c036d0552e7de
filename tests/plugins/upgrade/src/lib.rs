//! One job in three versions (cargo features), for plugin upgrades through
//! savepoints: numbers 0..count (`--set count`, `--set rate`) keyed by
//! `n % 10`; a keyed value state sums each key's numbers (host state), and
//! the instance counts the records it has seen in its own memory (guest
//! state). Each record becomes `key,n,sum,seen` in exactly-once part files
//! in `--set output=DIR`.
//!
//! - version 1 keeps `seen` as 8 little-endian bytes;
//! - version 2 keeps `seen` and the version its state came from as text
//!   `seen/origin`, migrates version 1's bytes, and appends the origin to
//!   each line (`key,n,sum,seen,origin`);
//! - version 3 refuses state of version 1;
//! - version 4 is version 2 that refuses an instance's state of version 1
//!   whose counter is 0 (an instance that saw no record, e.g. the
//!   source's): a live upgrade to it switches some subtasks, not all.

use std::cell::RefCell;

use flinkw::prelude::*;

#[cfg(not(any(feature = "v2", feature = "v3", feature = "v4")))]
const VERSION: &str = "1";
#[cfg(feature = "v2")]
const VERSION: &str = "2";
#[cfg(all(feature = "v3", not(feature = "v2")))]
const VERSION: &str = "3";
#[cfg(all(feature = "v4", not(any(feature = "v2", feature = "v3"))))]
const VERSION: &str = "4";

/// Records seen by this instance, and the version that started counting.
struct Seen {
    count: u64,
    origin: String,
}

thread_local! {
    static SEEN: RefCell<Seen> = RefCell::new(Seen { count: 0, origin: VERSION.to_owned() });
}

fn encode() -> Vec<u8> {
    SEEN.with(|s| {
        let s = s.borrow();
        if VERSION == "1" {
            s.count.to_le_bytes().to_vec()
        } else {
            format!("{}/{}", s.count, s.origin).into_bytes()
        }
    })
}

fn decode(bytes: &[u8]) -> Result<(), Error> {
    let seen = if VERSION == "1" {
        let b: [u8; 8] = bytes.try_into().map_err(|_| Error::msg("bad version 1 state"))?;
        Seen { count: u64::from_le_bytes(b), origin: VERSION.to_owned() }
    } else {
        let text = std::str::from_utf8(bytes).map_err(|_| Error::msg("state is not text"))?;
        let (count, origin) =
            text.split_once('/').ok_or_else(|| Error::msg(format!("bad state {text:?}")))?;
        Seen { count: count.parse()?, origin: origin.to_owned() }
    };
    SEEN.with(|s| *s.borrow_mut() = seen);
    Ok(())
}

fn migrate(from: &str, state: Vec<u8>) -> Result<Vec<u8>, Error> {
    match (VERSION, from) {
        ("2" | "4", "1") => {
            let b: [u8; 8] = state
                .as_slice()
                .try_into()
                .map_err(|_| Error::msg("version 1 state is not 8 bytes"))?;
            let count = u64::from_le_bytes(b);
            if VERSION == "4" && count == 0 {
                return Err(Error::msg("version 4 takes no empty counter"));
            }
            Ok(format!("{count}/1").into_bytes())
        }
        (now, then) => Err(Error::msg(format!(
            "version {now} cannot read the state of version {then}: its counter format changed; \
             restore from a savepoint of version 2"
        ))),
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("upgrade");
    env.version(VERSION);
    env.guest_state(encode, decode);
    env.migrate(migrate);
    let count: u64 = env.config().parse_or("count", 1000)?;
    let rate: u64 = env.config().parse_or("rate", 0)?;
    let output = env.config().require("output")?;
    let sums = ValueState::<u64>::new("sum");
    env.source(Datagen::sequence(count).rate(rate))
        .key_by(|n: &u64| n % 10)
        .process(move |ctx, n: u64, out| {
            let sum = sums.get(ctx)?.unwrap_or(0) + n;
            sums.set(ctx, &sum)?;
            let (seen, origin) = SEEN.with(|s| {
                let mut s = s.borrow_mut();
                s.count += 1;
                (s.count, s.origin.clone())
            });
            let line = format!("{},{n},{sum},{seen}", n % 10);
            out.emit(if VERSION == "1" { line } else { format!("{line},{origin}") });
            Ok(())
        })
        .sink(PartFileSink::new(&output));
    Ok(())
}

flinkw::export_job!(job);
