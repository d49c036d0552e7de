//! {{name}}: a flinkw plugin. Counts words: each word emits `word count-so-far`.
//!
//! ```text
//! flinkw plugin build
//! flinkw test build/{{name}}.wasm --input test/input.txt --expect test/expected.txt
//! ```

use flinkw::prelude::*;

fn job(env: &mut Env) -> Result<(), Error> {
    env.set_name("{{name}}");
    let input = env.config().require("input")?;
    let count = ValueState::<u64>::new("count");
    env.source(File::lines(&input))
        .flat_map(|line: String| line.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
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
