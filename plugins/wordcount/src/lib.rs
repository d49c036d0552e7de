//! Word count: splits lines into words and keeps a running count per word in
//! keyed value state, like Flink's streaming WordCount. Each input word
//! emits `word count-so-far`; the last line for a word is its total.
//!
//! ```text
//! flinkw run wordcount.wasm --set input=examples/data/words.txt
//! ```

use flinkw::prelude::*;

fn split_words(line: String) -> Vec<String> {
    line.split(|c: char| !c.is_alphanumeric() && c != '\'')
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("wordcount");
    let input = env.config().require("input")?;
    let count = ValueState::<u64>::new("count");
    env.source(File::lines(&input))
        .flat_map(split_words)
        .name("split-words")
        .key_by(|word: &String| word.clone())
        .process(move |ctx, word: String, out| {
            let n = count.get(ctx)?.unwrap_or(0) + 1;
            count.set(ctx, &n)?;
            out.emit(format!("{word} {n}"));
            Ok(())
        })
        .name("count")
        .sink(Stdout);
    Ok(())
}

flinkw::export_job!(job);
