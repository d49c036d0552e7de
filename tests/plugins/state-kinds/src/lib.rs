//! Exercises list and map state: words keyed by their first letter; each
//! word is added to the letter's list and counted in the letter's map;
//! the word `reset` clears both. Emits
//! `letter list_len distinct_words word=count longest total_len` (or
//! `letter reset`), where `longest` (a reducing state) is the letter's
//! longest word so far and `total_len` (an aggregating state) the sum of
//! its words' lengths; `reset` does not clear those two.

use flinkw::prelude::*;

/// Sum of the lengths of the words added.
struct SumOfLengths;

impl AggregateFunction<String> for SumOfLengths {
    type Acc = u64;
    type Out = u64;
    fn create_accumulator(&self) -> u64 {
        0
    }
    fn add(&self, acc: &mut u64, word: &String) {
        *acc += word.len() as u64;
    }
    fn merge(&self, a: u64, b: u64) -> u64 {
        a + b
    }
    fn result(&self, acc: u64) -> u64 {
        acc
    }
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("state-kinds");
    let input = env.config().require("input")?;
    let words = ListState::<String>::new("words");
    let counts = MapState::<String, u64>::new("counts");
    let longest =
        ReducingState::new("longest", |a: String, b: String| if b.len() > a.len() { b } else { a });
    let total_len = AggregatingState::new("total-len", SumOfLengths);
    env.source(File::lines(&input))
        .flat_map(|l: String| l.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
        .key_by(|w: &String| w.chars().next().unwrap_or(' '))
        .process(move |ctx, word: String, out| {
            let letter = word.chars().next().unwrap_or(' ');
            if word == "reset" {
                words.clear(ctx);
                counts.clear(ctx);
                out.emit(format!("{letter} reset"));
                return Ok(());
            }
            words.add(ctx, &word)?;
            let n = counts.get(ctx, &word)?.unwrap_or(0) + 1;
            counts.put(ctx, &word, &n)?;
            let len = words.get(ctx)?.len();
            let distinct = counts.entries(ctx)?.len();
            longest.add(ctx, word.clone())?;
            total_len.add(ctx, &word)?;
            let long = longest.get(ctx)?.unwrap_or_default();
            let total = total_len.get(ctx)?.unwrap_or(0);
            out.emit(format!("{letter} {len} {distinct} {word}={n} {long} {total}"));
            Ok(())
        })
        .sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
