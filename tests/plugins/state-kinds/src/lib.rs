//! Exercises list and map state: words keyed by their first letter; each
//! word is added to the letter's list and counted in the letter's map;
//! the word `reset` clears both. Emits
//! `letter list_len distinct_words word=count` (or `letter reset`).

use flinkw::prelude::*;

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("state-kinds");
    let input = env.config().require("input")?;
    let words = ListState::<String>::new("words");
    let counts = MapState::<String, u64>::new("counts");
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
            out.emit(format!("{letter} {len} {distinct} {word}={n}"));
            Ok(())
        })
        .sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
