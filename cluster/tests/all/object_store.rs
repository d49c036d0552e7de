//! Object-store connectors end to end: the `object-store-etl` plugin reads
//! orders (CSV, JSON lines, Parquet) from a local directory or a real
//! object store started here on loopback (S3: moto; Azure Blob: Azurite)
//! and writes
//! rolling part files; outputs are compared with what the test computes
//! from the input it wrote. Parquet files are written here with the
//! `parquet` crate's writer (Snappy, several row groups per file).

use std::collections::BTreeMap;
use std::path::Path as FsPath;
use std::sync::Arc;

use flinkw_host::connector::object_store::parquet;
use parquet::data_type::{ByteArray, ByteArrayType, DoubleType, Int64Type};
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::file::writer::SerializedFileWriter;

use flinkw_host::objstore::object_store::path::Path;
use flinkw_host::objstore::object_store::{ObjectStore, ObjectStoreExt};
use flinkw_host::objstore::{self, StoreLocation, StoreOptions, block_on};
use flinkw_tests::artifacts;
use flinkw_tests::s3::S3Server;
use flinkw_tests::stores::{Cloud, TestStore};

use crate::{assert_fails_with, flinkw, kill_repeatedly, latest_checkpoint};

/// An order: id, customer, amount in cents (some not positive).
type Order = (u64, String, i64);

/// Files to upload: (name under the prefix, content).
type Files = Vec<(String, String)>;

/// `n` orders in `files` CSV (or JSON-lines) files, and the orders themselves.
fn orders(n: u64, files: u64, csv: bool) -> (Files, Vec<Order>) {
    let mut all = Vec::new();
    let mut out = Vec::new();
    let ext = if csv { "csv" } else { "jsonl" };
    for f in 0..files {
        let mut text = if csv { String::from("id,customer,amount\n") } else { String::new() };
        for id in (f..n).step_by(files as usize) {
            let customer = format!("c{}", (id * 7919) % 37);
            let cents = (id as i64 * 31) % 5000 - 200;
            let amount = format!("{}.{:02}", cents / 100, (cents % 100).abs());
            let amount = if cents < 0 && cents > -100 { format!("-{amount}") } else { amount };
            if csv {
                text.push_str(&format!("{id},{customer},{amount}\n"));
            } else {
                text.push_str(&format!(
                    "{{\"id\":{id},\"customer\":\"{customer}\",\"amount\":{amount}}}\n"
                ));
            }
            all.push((id, customer, cents));
        }
        out.push((format!("day={}/orders-{f:02}.{ext}", f % 2), text));
    }
    (out, all)
}

/// One Parquet file of `orders` (id int64, customer string, amount double),
/// `per_group` rows per row group, Snappy.
fn parquet_file(orders: &[Order], per_group: usize) -> Vec<u8> {
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message order { required int64 id; required binary customer (UTF8); \
             required double amount; }",
        )
        .unwrap(),
    );
    let props = Arc::new(
        WriterProperties::builder().set_compression(parquet::basic::Compression::SNAPPY).build(),
    );
    let mut out = Vec::new();
    let mut w = SerializedFileWriter::new(&mut out, schema, props).unwrap();
    for group in orders.chunks(per_group) {
        let ids: Vec<i64> = group.iter().map(|o| o.0 as i64).collect();
        let customers: Vec<ByteArray> = group.iter().map(|o| o.1.as_str().into()).collect();
        let amounts: Vec<f64> = group.iter().map(|o| o.2 as f64 / 100.0).collect();
        let mut rg = w.next_row_group().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<Int64Type>().write_batch(&ids, None, None).unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<ByteArrayType>().write_batch(&customers, None, None).unwrap();
        c.close().unwrap();
        let mut c = rg.next_column().unwrap().unwrap();
        c.typed::<DoubleType>().write_batch(&amounts, None, None).unwrap();
        c.close().unwrap();
        rg.close().unwrap();
    }
    w.close().unwrap();
    out
}

/// `n` orders in `files` Parquet files of row groups of `per_group` rows.
fn parquet_orders(n: u64, files: u64, per_group: usize) -> (Vec<(String, Vec<u8>)>, Vec<Order>) {
    let (_, all) = orders(n, files, true);
    let out = (0..files)
        .map(|f| {
            let mine: Vec<Order> = all.iter().filter(|o| o.0 % files == f).cloned().collect();
            (format!("day={}/orders-{f:02}.parquet", f % 2), parquet_file(&mine, per_group))
        })
        .collect();
    (out, all)
}

fn put_bytes(loc: &StoreLocation, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        block_on(loc.store.put(&loc.child(name), bytes.clone().into())).unwrap();
    }
}

/// What `pipeline=map` makes of the orders, as JSON lines.
fn mapped(orders: &[Order]) -> Vec<String> {
    orders
        .iter()
        .filter(|(_, _, c)| *c > 0)
        .map(|(id, customer, cents)| {
            format!("{{\"id\":{id},\"customer\":\"{customer}\",\"cents\":{cents}}}")
        })
        .collect()
}

/// What `pipeline=count` makes of the orders: per customer, 1..=its count.
fn counted(orders: &[Order]) -> Vec<String> {
    let mut per: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, c, _) in orders {
        *per.entry(c).or_default() += 1;
    }
    per.iter()
        .flat_map(|(c, n)| (1..=*n).map(move |i| format!("{{\"customer\":\"{c}\",\"n\":{i}}}")))
        .collect()
}

/// Asserts `got` and `expected` hold the same lines the same number of times.
#[track_caller]
fn assert_same_lines(got: &[String], expected: &[String], what: &str) {
    let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
    for e in expected {
        *counts.entry(e).or_default() += 1;
    }
    for g in got {
        *counts.entry(g).or_default() -= 1;
    }
    let lost: i64 = counts.values().filter(|c| **c > 0).sum();
    let extra: i64 = -counts.values().filter(|c| **c < 0).sum::<i64>();
    let sample: Vec<_> = counts.iter().filter(|(_, c)| **c != 0).take(6).collect();
    assert!(
        lost == 0 && extra == 0,
        "{what}: {lost} lines lost, {extra} duplicated or unexpected (of {}); e.g. {sample:?}",
        expected.len()
    );
}

fn s3_options(server: &S3Server) -> StoreOptions {
    options_from(&server.options(), Cloud::S3)
}

/// The test's own client settings for a store (its connector options).
pub(crate) fn store_options(store: &TestStore) -> StoreOptions {
    options_from(&store.options(), store.cloud())
}

fn options_from(options: &[(String, String)], cloud: Cloud) -> StoreOptions {
    let map: BTreeMap<String, String> = options.iter().cloned().collect();
    StoreOptions::from_options(&map, &format!("{}.", cloud.scheme())).unwrap()
}

/// `args` run with `env` (a store's settings for the flinkw process).
fn flinkw_with(args: &[String], dir: &FsPath, env: &[(String, String)]) -> flinkw_tests::Run {
    std::process::Command::new(env!("CARGO_BIN_EXE_flinkw"))
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("FLINKW_CACHE_DIR", dir.join("cache"))
        .env_remove("FLINKW_LOG")
        .output()
        .unwrap()
        .into()
}

fn put_all(loc: &StoreLocation, files: &[(String, String)]) {
    for (name, text) in files {
        block_on(loc.store.put(&loc.child(name), text.clone().into())).unwrap();
    }
}

/// Names (relative to the location) of the objects directly under it and
/// under its `.pending/`.
fn listing(loc: &StoreLocation) -> (Vec<String>, Vec<String>) {
    let list = |p: &Path| {
        let r = block_on(loc.store.list_with_delimiter(Some(p))).unwrap();
        let mut names: Vec<String> =
            r.objects.iter().filter_map(|o| o.location.filename().map(str::to_owned)).collect();
        names.sort();
        names
    };
    (list(&loc.prefix), list(&loc.child(".pending")))
}

fn read_text(loc: &StoreLocation, name: &str) -> String {
    let p = loc.child(name);
    let bytes = block_on(async { loc.store.get(&p).await?.bytes().await }).unwrap();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn args(input: &str, output: &str, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["run".into(), artifacts::OBJECT_STORE_ETL.into()];
    for s in [format!("input={input}"), format!("output={output}")] {
        a.push("--set".into());
        a.push(s);
    }
    for s in extra {
        if s.starts_with("--") || !s.contains('=') {
            a.push(s.to_string());
        } else {
            a.push("--set".into());
            a.push(s.to_string());
        }
    }
    a
}

fn strs(a: &[String]) -> Vec<&str> {
    a.iter().map(String::as_str).collect()
}

fn s3_sets(server: &S3Server) -> Vec<String> {
    server.options().iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// The committed part files in `out` (checked: none left staged, names
/// `part-<subtask>-<n><suffix>` without gaps) and all their lines.
#[track_caller]
fn committed_parts(out: &StoreLocation, suffix: &str) -> (Vec<String>, Vec<String>) {
    let (parts, pending) = listing(out);
    assert!(pending.is_empty(), "staged parts left: {pending:?}");
    assert_part_names(&parts, suffix);
    let lines = parts
        .iter()
        .flat_map(|p| read_text(out, p).lines().map(str::to_owned).collect::<Vec<_>>())
        .collect();
    (parts, lines)
}

/// Part names: `part-<subtask>-<n><suffix>`, numbered from 0 without gaps per subtask.
#[track_caller]
fn assert_part_names(names: &[String], suffix: &str) {
    let mut per: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    for name in names {
        let rest = name
            .strip_prefix("part-")
            .and_then(|r| r.strip_suffix(suffix))
            .unwrap_or_else(|| panic!("unexpected object {name}"));
        let (s, n) = rest.split_once('-').unwrap();
        per.entry(s.parse().unwrap()).or_default().push(n.parse().unwrap());
    }
    for (s, mut ns) in per {
        ns.sort();
        assert_eq!(ns, (0..ns.len() as u64).collect::<Vec<_>>(), "parts of subtask {s}: {names:?}");
    }
}

#[test]
fn object_store_csv_files_in_a_directory_become_json_lines_parts() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    let (files, all) = orders(3_000, 5, true);
    for (name, text) in &files {
        let p = input.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    // Not read: hidden, underscore and (by the glob) other files.
    std::fs::write(input.join(".hidden.csv"), "id,customer,amount\n1,x,1\n").unwrap();
    std::fs::write(input.join("_SUCCESS"), "").unwrap();
    std::fs::write(input.join("day=0/readme.txt"), "not orders\n").unwrap();
    let output = dir.path().join("out");
    let url = format!("file://{}", output.display());
    let a = args(
        &input.display().to_string(),
        &url,
        &["glob=**/*.csv", "parallelism=2", "roll-bytes=4000"],
    );
    let run = flinkw(&strs(&a), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    let loc = objstore::open(&url, &StoreOptions::default()).unwrap();
    let (parts, got) = committed_parts(&loc, ".jsonl");
    assert!(parts.len() > 4, "rolled by size into several parts: {parts:?}");
    assert_same_lines(&got, &mapped(&all), "csv dir -> jsonl dir");
}

#[test]
fn object_store_s3_json_lines_become_csv_parts() {
    json_lines_become_csv_parts(Cloud::S3);
}

#[test]
fn object_store_azure_json_lines_become_csv_parts() {
    json_lines_become_csv_parts(Cloud::Azure);
}

/// JSON lines in a store become rolled CSV parts in the same store; the
/// flinkw process finds the store through the cloud's environment
/// variables, the test through connector-style options.
fn json_lines_become_csv_parts(cloud: Cloud) {
    let store = TestStore::start(cloud);
    store.create_bucket("data");
    let opts = store_options(&store);
    let input = objstore::open(&store.url("data", "orders"), &opts).unwrap();
    let (files, all) = orders(2_000, 4, false);
    put_all(&input, &files);
    let dir = tempfile::tempdir().unwrap();
    let extra = ["format=jsonl", "output-format=csv", "parallelism=2", "roll-bytes=3000"];
    let out_url = store.url("data", "out/csv");
    let a = args(&store.url("data", "orders"), &out_url, &extra);
    let run = flinkw_with(&a, dir.path(), &store.env());
    assert!(run.ok(), "{}", run.stderr);
    let out = objstore::open(&out_url, &opts).unwrap();
    let (parts, _) = committed_parts(&out, ".csv");
    assert!(parts.len() > 4, "rolled by size into several parts: {parts:?}");
    let mut got = Vec::new();
    for p in &parts {
        let text = read_text(&out, p);
        let mut lines = text.lines();
        assert_eq!(lines.next(), Some("id,customer,cents"), "{p} starts with the header");
        for l in lines {
            let f: Vec<&str> = l.split(',').collect();
            got.push(format!("{{\"id\":{},\"customer\":\"{}\",\"cents\":{}}}", f[0], f[1], f[2]));
        }
    }
    assert_same_lines(&got, &mapped(&all), &format!("{cloud:?} jsonl -> {cloud:?} csv"));
}

#[test]
fn object_store_counts_are_exactly_once_across_kill_9() {
    exactly_once_across_kill_9(false, Cloud::S3);
}

/// The same with Parquet input: restores seek to a row inside a row group.
#[test]
fn object_store_parquet_counts_are_exactly_once_across_kill_9() {
    exactly_once_across_kill_9(true, Cloud::S3);
}

/// The same on Azure Blob Storage (Azurite).
#[test]
fn object_store_counts_are_exactly_once_across_kill_9_on_azure() {
    exactly_once_across_kill_9(false, Cloud::Azure);
}

fn exactly_once_across_kill_9(parquet: bool, cloud: Cloud) {
    let store = TestStore::start(cloud);
    store.create_bucket("data");
    let opts = store_options(&store);
    let input = objstore::open(&store.url("data", "in"), &opts).unwrap();
    let all = if parquet {
        let (files, all) = parquet_orders(60_000, 6, 1_500);
        put_bytes(&input, &files);
        all
    } else {
        let (files, all) = orders(60_000, 6, true);
        put_all(&input, &files);
        all
    };
    let expected = counted(&all);
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let checkpoint_dir = dir.path().join("checkpoints");
    let checkpoints = checkpoint_dir.display().to_string();
    let mut extra: Vec<String> =
        ["pipeline=count", "parallelism=2", "checkpoint.interval-ms=100", "batch.size=64"]
            .map(String::from)
            .to_vec();
    if parquet {
        extra.push("format=parquet".into());
    }
    extra.extend(["--checkpoint-dir".to_owned(), checkpoints]);
    let env = store.env();
    let a = args(&store.url("data", "in"), &store.url("data", "out"), &strs(&extra));
    // Compile the plugin once, so the runs spend their time on the job.
    let plan = flinkw(
        &["plan", artifacts::OBJECT_STORE_ETL, "--set", "input=x", "--set", "output=y"],
        dir.path(),
    );
    assert!(plan.ok(), "{}", plan.stderr);
    let latest = || latest_checkpoint(&checkpoint_dir);
    let env_refs: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let kills = kill_repeatedly(&a, &cache, &env_refs, &latest, 0x6f62_6a73, 8);
    let last = flinkw_with(&a, dir.path(), &env);
    assert!(last.ok(), "{}", last.stderr);
    eprintln!("{kills} kills; the last run: {}", last.stderr);
    assert!(kills >= 5, "the job was killed only {kills} times");
    assert!(last.stderr.contains("restored from checkpoint"), "{}", last.stderr);
    let out = objstore::open(&store.url("data", "out"), &opts).unwrap();
    let (_, got) = committed_parts(&out, ".jsonl");
    assert_same_lines(&got, &expected, &format!("{cloud:?}: after {kills} kills"));
}

fn bad_run(dir: &FsPath, input: &str, extra: &[String]) -> flinkw_tests::Run {
    let out = dir.join("out").display().to_string();
    let a = args(input, &out, &strs(extra));
    flinkw(&strs(&a), dir)
}

#[test]
fn object_store_bad_urls_buckets_and_credentials_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let run = bad_run(dir.path(), "ftp://bucket/in", &[]);
    assert_fails_with(
        &run,
        &["object-store source", "ftp://bucket/in", "unknown scheme `ftp`", "gs, az"],
    );

    let missing = dir.path().join("nothing-here").display().to_string();
    let run = bad_run(dir.path(), &missing, &[]);
    assert_fails_with(&run, &["no file under", &missing]);

    let server = S3Server::start();
    let run = bad_run(dir.path(), "s3://no-such-bucket/in", &s3_sets(&server));
    assert_fails_with(&run, &["object-store source", "s3://no-such-bucket/in", "NoSuchBucket"]);

    let strict = S3Server::start_checking_credentials();
    let run = bad_run(dir.path(), "s3://data/in", &s3_sets(&strict));
    assert_fails_with(&run, &["object-store source", "s3://data/in", "403"]);
}

/// A missing Azure container, and GCS and Azure stores nobody answers at:
/// the job fails before it starts, naming the URL (and the address it
/// could not reach).
#[test]
fn object_store_gcs_and_azure_missing_containers_and_unreachable_stores_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out").display().to_string();
    let azurite = TestStore::start(Cloud::Azure);
    let missing = azurite.url("no-such-container", "in");
    let run = flinkw_with(&args(&missing, &out, &[]), dir.path(), &azurite.env());
    assert_fails_with(&run, &["object-store source", &missing, "ContainerNotFound"]);

    let closed = format!("127.0.0.1:{}", flinkw_tests::kafka::free_port());
    let stores: [(&str, Vec<(String, String)>); 2] = [
        (
            "gs://data/in",
            vec![(
                "GOOGLE_SERVICE_ACCOUNT_KEY".into(),
                format!(
                    r#"{{"gcs_base_url": "http://{closed}", "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""}}"#
                ),
            )],
        ),
        (
            "az://data/in",
            vec![
                ("AZURE_STORAGE_USE_EMULATOR".into(), "true".into()),
                ("AZURITE_BLOB_STORAGE_URL".into(), format!("http://{closed}")),
            ],
        ),
    ];
    for (url, env) in stores {
        let run = flinkw_with(&args(url, &out, &[]), dir.path(), &env);
        assert_fails_with(&run, &["object-store source", url, &closed]);
    }
}

#[test]
fn object_store_malformed_csv_and_json_lines_name_the_file_and_line() {
    let server = S3Server::start();
    server.create_bucket("data");
    let input = objstore::open("s3://data/in", &s3_options(&server)).unwrap();
    let text = "id,customer,amount\n1,a,2.5\n2,\"b,3\n3,c,1\n";
    put_all(&input, &[("bad.csv".to_owned(), text.to_owned())]);
    let dir = tempfile::tempdir().unwrap();
    let run = bad_run(dir.path(), "s3://data/in", &s3_sets(&server));
    assert_fails_with(&run, &["s3://data/in/bad.csv:3", "unterminated quote"]);
    let mut skip = s3_sets(&server);
    skip.push("--skip-bad-lines".into());
    let run = bad_run(dir.path(), "s3://data/in", &skip);
    assert!(run.ok(), "{}", run.stderr);
    // JSON lines: the same, naming the line.
    let text = "{\"id\":1,\"customer\":\"a\",\"amount\":2.5}\n{\"id\":2,\"customer\":\"b\",\n";
    put_all(&input, &[("j/bad.jsonl".to_owned(), text.to_owned())]);
    let mut jsonl = s3_sets(&server);
    jsonl.push("format=jsonl".into());
    let run = bad_run(dir.path(), "s3://data/in/j", &jsonl);
    assert_fails_with(&run, &["s3://data/in/j/bad.jsonl:2", "not valid JSON"]);
}

#[test]
fn object_store_parquet_files_in_s3_become_json_lines_parts() {
    let server = S3Server::start();
    server.create_bucket("data");
    let opts = s3_options(&server);
    let input = objstore::open("s3://data/orders", &opts).unwrap();
    let (files, all) = parquet_orders(5_000, 3, 700);
    put_bytes(&input, &files);
    let dir = tempfile::tempdir().unwrap();
    let mut extra = s3_sets(&server);
    extra.extend(
        ["format=parquet", "glob=**/*.parquet", "parallelism=2", "roll-bytes=20000"]
            .map(String::from),
    );
    let a = args("s3://data/orders", "s3://data/out", &strs(&extra));
    let run = flinkw(&strs(&a), dir.path());
    assert!(run.ok(), "{}", run.stderr);
    let out = objstore::open("s3://data/out", &opts).unwrap();
    let (_, got) = committed_parts(&out, ".jsonl");
    assert_same_lines(&got, &mapped(&all), "s3 parquet -> s3 jsonl");
}

#[test]
fn object_store_damaged_parquet_names_the_file_and_row_group() {
    let server = S3Server::start();
    server.create_bucket("data");
    let input = objstore::open("s3://data/in", &s3_options(&server)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Not Parquet at all.
    put_all(&input, &[("a.parquet".to_owned(), "id,customer,amount\n1,a,2.5\n".to_owned())]);
    let mut extra = s3_sets(&server);
    extra.push("format=parquet".into());
    let run = bad_run(dir.path(), "s3://data/in", &extra);
    assert_fails_with(&run, &["s3://data/in/a.parquet", "not a readable Parquet file"]);

    // Row group 1 of 3 overwritten with garbage: row group 0 is read, then
    // the error names the file and row group 1.
    let (_, all) = orders(300, 1, true);
    let mut bytes = parquet_file(&all, 100);
    let local = dir.path().join("good.parquet");
    std::fs::write(&local, &bytes).unwrap();
    let reader = SerializedFileReader::new(std::fs::File::open(&local).unwrap()).unwrap();
    let (start, len) = reader.metadata().row_group(1).column(0).byte_range();
    for b in &mut bytes[start as usize..(start + len) as usize] {
        *b = 0xee;
    }
    block_on(input.store.delete(&input.child("a.parquet"))).unwrap();
    put_bytes(&input, &[("b.parquet".to_owned(), bytes)]);
    let run = bad_run(dir.path(), "s3://data/in", &extra);
    assert_fails_with(&run, &["s3://data/in/b.parquet, row group 1, row 0"]);
}
