//! Pipeline benchmark: synthetic `studentData` items from an in-process source (no emulator, so
//! nothing hides our speed) through scan paging → encode → compress → upload into a discarding
//! store. Prints items/s, MB/s, MB/s per core (uncompressed bytes per CPU-second) and peak RSS for
//! 100k and 1M items, and, as the bound, the compressor alone over the same bytes (each segment's
//! pages as one stream, as its file holds them): once with the streams running side by side
//! (`compressor`, the bound the ratio uses: the pipeline runs that many streams at once, and on
//! this VM two parallel streams cost each other up to ~20% per core through the shared cache),
//! and once on a single thread (`compressor-1t`). A third run (`compressor-interleaved`) shows
//! what preparing input just in time costs the compressor: the same two streams, but each
//! renders, cuts and encodes a whole page before compressing it, so the compressor's tables are
//! no longer warm in the cache when it runs (the pipeline prepares 64 KiB of lines at a time,
//! and on slow minutes measures faster than this). The synthetic
//! source (`source`) and the cutting of its response bodies into items (`splitter`) are also
//! timed alone. For the wire formats the source renders a few distinct Scan response bodies
//! before the clock starts and hands them out in turn (see `SyntheticSource::prerendered`):
//! rendering JSON is DynamoDB's work, and timing it would hide ours.
//!
//!   cargo bench --bench pipeline                # full run (100k and 1M items)
//!   cargo bench --bench pipeline -- --smoke     # quick run used by CI to keep this working
//!
//! BENCH_SEGMENTS (default 2) and BENCH_PAGE_ITEMS (default 2000) change the shape of the run;
//! BENCH_RUNS (default 3) sets how many times each measurement runs (the least CPU is kept, with
//! the highest peak RSS of the runs). The runs of a pipeline and of its bound take turns, and the
//! ratio is also given run by run (median and range), which this shared VM's noise moves less.
//!
//! Each measurement runs in its own child process so that peak RSS (VmHWM) belongs to it alone.
//!
//! One file of about 700 lines: a `harness = false` bench is its own crate, and the parent and its
//! child processes share every helper.

use std::io::Write;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use ddb_backup::backup::compress::Compressor;
use ddb_backup::codec::encode::{encoder_for, EncodeOptions, RecordEncoder};
use ddb_backup::model::job::JobDefaults;
use ddb_backup::source::seed::SyntheticSource;
use ddb_backup::source::PageItems;
use ddb_backup::store::MemoryStore;
use ddb_backup::{Backup, BackupJob, Compression, Format, Tuning};

/// The same allocator as the shipped binaries, tuned the same way (in `main`).
#[global_allocator]
static ALLOCATOR: ddb_backup::runtime::allocator::Allocator =
    ddb_backup::runtime::allocator::Allocator;

const PAGE_ITEMS: u64 = 2000;

fn page_items() -> u64 {
    std::env::var("BENCH_PAGE_ITEMS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(PAGE_ITEMS)
}
fn segments() -> u32 {
    std::env::var("BENCH_SEGMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

fn main() {
    ddb_backup::runtime::allocator::tune();
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        child(&args[1..]);
        return;
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let sizes: Vec<u64> = if smoke {
        vec![20_000]
    } else {
        vec![100_000, 1_000_000]
    };
    let cases = [
        (Format::DynamodbJson, Compression::Gzip),
        (Format::DynamodbJson, Compression::Zstd),
        (Format::Json, Compression::Zstd),
        (Format::Csv, Compression::Gzip),
        // Parquet compresses its columns (zstd by default) instead of the stream.
        (Format::Parquet, Compression::None),
        (Format::DynamodbJson, Compression::None),
    ];
    println!("ddb-backup pipeline benchmark: synthetic studentData items, in-process source, discarding store,");
    println!(
        "{} segments, {}-item pages, {} cores. MB = 10^6 bytes of encoded (uncompressed) output;\n\
         for Parquet, whose columns are compressed inside the file, MB is the file itself.",
        segments(),
        page_items(),
        num_cores()
    );
    println!(
        "{:<22} {:<14} {:<5} {:>9} {:>7} {:>10} {:>8} {:>10} {:>9} {:>8}",
        "mode",
        "format",
        "comp",
        "items",
        "secs",
        "items/s",
        "MB/s",
        "MB/s/core",
        "peak RSS",
        "ratio"
    );
    let mut rows = Vec::new();
    // The pipeline-to-bound ratio of each run, pipeline and its two-stream bound side by side.
    let mut paired: Vec<(u64, Compression, Vec<f64>)> = Vec::new();
    for &n in &sizes {
        for format in [Format::DynamodbJson, Format::Json] {
            let source = run_child("source", n, format, Compression::None);
            print_row(&source);
            rows.push(source);
        }
        let splitter = run_child("splitter", n, Format::DynamodbJson, Compression::None);
        print_row(&splitter);
        rows.push(splitter);
        for (format, compression) in cases {
            let mut modes = vec!["pipeline"];
            if compression == Compression::None && !format.is_tabular() {
                modes.push("encoder");
            }
            if compression != Compression::None && format == Format::DynamodbJson {
                modes.extend(["compressor", "compressor-1t", "compressor-interleaved"]);
            }
            let runs = run_children(&modes, n, format, compression);
            // The bounds compress the very streams the pipeline's files hold (one per segment):
            // the same bytes in must give the same bytes out (give or take the few bytes by which
            // deflate's output moves with how its input is chunked), or the ratio compares other
            // work. Pages dealt to the streams in turn, as the bound once did, came out 0.1%
            // apart for zstd: other streams, whose CPU was within this VM's noise of these.
            let pipeline = &runs[0][0];
            let bounds = modes
                .iter()
                .zip(&runs)
                .filter(|(m, _)| m.starts_with("compressor"));
            for (mode, rows) in bounds {
                for row in rows {
                    let apart =
                        row.stored.abs_diff(pipeline.stored) as f64 / pipeline.stored as f64;
                    assert!(
                        row.uncompressed == pipeline.uncompressed && apart < 1e-4,
                        "{mode} compressed other streams than the pipeline ({n} items, \
                         {compression}): {} -> {} bytes against {} -> {}",
                        row.uncompressed,
                        row.stored,
                        pipeline.uncompressed,
                        pipeline.stored
                    );
                }
            }
            if let Some(bound) = modes.iter().position(|&m| m == "compressor") {
                // The machine's noise comes in minutes: a pipeline run and the bound run next to
                // it share one, so their ratio is steadier than the one of the least CPU of each,
                // taken from different minutes.
                let mut ratios: Vec<f64> = runs[0]
                    .iter()
                    .zip(&runs[bound])
                    .map(|(p, c)| p.mb_per_core() / c.mb_per_core())
                    .collect();
                ratios.sort_by(f64::total_cmp);
                paired.push((n, compression, ratios));
            }
            for row in runs.into_iter().map(least_cpu) {
                print_row(&row);
                rows.push(row);
            }
        }
    }
    println!();
    for &n in &sizes {
        for compression in [Compression::Gzip, Compression::Zstd] {
            let find = |mode: &str| {
                rows.iter().find(|r| {
                    r.mode == mode
                        && r.items == n
                        && r.compression == compression
                        && r.format == Format::DynamodbJson
                })
            };
            // The source hands out pre-rendered bodies, so its CPU (timed alone above, next to
            // nothing) is part of the pipeline's figure.
            if let (Some(p), Some(c), Some(c1)) =
                (find("pipeline"), find("compressor"), find("compressor-1t"))
            {
                println!(
                    "{n} items, {compression}: compressor alone {:.1} MB/s per core ({} streams side by side; \
                     {:.1} on one thread); pipeline {:.1} MB/s per core = {:.2} x ({:.2} x of one thread)",
                    c.mb_per_core(),
                    segments(),
                    c1.mb_per_core(),
                    p.mb_per_core(),
                    p.mb_per_core() / c.mb_per_core(),
                    p.mb_per_core() / c1.mb_per_core()
                );
                if let Some((_, _, ratios)) =
                    paired.iter().find(|(m, c, _)| *m == n && *c == compression)
                {
                    println!(
                        "{n} items, {compression}: run by run, pipeline = {:.2} x of the bound next \
                         to it (median of {}; {:.2}-{:.2})",
                        median(ratios),
                        ratios.len(),
                        ratios[0],
                        ratios[ratios.len() - 1],
                    );
                }
                if let Some(ci) = find("compressor-interleaved") {
                    println!(
                        "{n} items, {compression}: compressor fed one freshly prepared page at a time \
                         {:.1} MB/s per core; pipeline = {:.2} x of that",
                        ci.mb_per_core(),
                        p.mb_per_core() / ci.mb_per_core(),
                    );
                }
            }
        }
    }
    if sizes.len() == 2 {
        for (format, compression) in cases {
            let rss = |n: u64| {
                rows.iter()
                    .find(|r| {
                        r.mode == "pipeline"
                            && r.items == n
                            && r.format == format
                            && r.compression == compression
                    })
                    .map(|r| r.peak_rss_kib as f64)
            };
            if let (Some(small), Some(large)) = (rss(sizes[0]), rss(sizes[1])) {
                println!(
                    "peak RSS {format}/{compression}: {:.1} MiB at {} items, {:.1} MiB at {} items (ratio {:.2})",
                    small / 1024.0,
                    sizes[0],
                    large / 1024.0,
                    sizes[1],
                    large / small
                );
            }
        }
    }
}

/// The middle of sorted `values` (the mean of the two middle ones for an even count).
fn median(values: &[f64]) -> f64 {
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

struct Row {
    mode: String,
    format: Format,
    compression: Compression,
    items: u64,
    wall_secs: f64,
    cpu_secs: f64,
    uncompressed: u64,
    stored: u64,
    peak_rss_kib: u64,
}

impl Row {
    fn mb_per_core(&self) -> f64 {
        self.uncompressed as f64 / 1e6 / self.cpu_secs.max(1e-9)
    }
}

fn print_row(r: &Row) {
    println!(
        "{:<22} {:<14} {:<5} {:>9} {:>7.2} {:>10.0} {:>8.1} {:>10.1} {:>8.1}M {:>8.2}",
        r.mode,
        r.format.name(),
        r.compression.name(),
        r.items,
        r.wall_secs,
        r.items as f64 / r.wall_secs,
        r.uncompressed as f64 / 1e6 / r.wall_secs,
        r.mb_per_core(),
        r.peak_rss_kib as f64 / 1024.0,
        r.uncompressed as f64 / r.stored.max(1) as f64,
    );
}

/// Runs a measurement `BENCH_RUNS` times (default 3; 1 for `--smoke`) and keeps the run that
/// used the least CPU (see [`least_cpu`]).
fn run_child(mode: &str, n: u64, format: Format, compression: Compression) -> Row {
    run_children(&[mode], n, format, compression)
        .into_iter()
        .map(least_cpu)
        .next()
        .expect("one row per mode")
}

/// Runs each of `modes` `BENCH_RUNS` times (default 3; 1 for `--smoke`), taking turns, so that a
/// pipeline and its bound see the same moments of a shared machine. Returns every run of each
/// mode, in order.
fn run_children(modes: &[&str], n: u64, format: Format, compression: Compression) -> Vec<Vec<Row>> {
    let runs = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(if std::env::args().any(|a| a == "--smoke") {
            1
        } else {
            3
        });
    let mut all: Vec<Vec<Row>> = modes.iter().map(|_| Vec::new()).collect();
    for _ in 0..runs.max(1) {
        for (mode, rows) in modes.iter().zip(&mut all) {
            rows.push(run_child_once(mode, n, format, compression));
        }
    }
    all
}

/// The run of a mode that used the least CPU: the machine adds noise, never speed, so the minimum
/// is the best estimate of each stage's own cost, and every mode is treated alike. Peak RSS is the
/// highest of the runs, so memory is never flattered by the same choice.
fn least_cpu(rows: Vec<Row>) -> Row {
    let peak_rss_kib = rows.iter().map(|r| r.peak_rss_kib).max().unwrap_or(0);
    let mut least_cpu = rows
        .into_iter()
        .min_by(|a, b| a.cpu_secs.total_cmp(&b.cpu_secs))
        .expect("at least one run");
    least_cpu.peak_rss_kib = peak_rss_kib;
    least_cpu
}

fn run_child_once(mode: &str, n: u64, format: Format, compression: Compression) -> Row {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args([
            "--child",
            mode,
            &n.to_string(),
            format.name(),
            compression.name(),
        ])
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "child {mode} {n} {format} {compression} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let f: Vec<f64> = text
        .split_whitespace()
        .map(|v| v.parse().expect("number from child"))
        .collect();
    Row {
        mode: mode.to_string(),
        format,
        compression,
        items: n,
        wall_secs: f[0],
        cpu_secs: f[1],
        uncompressed: f[2] as u64,
        stored: f[3] as u64,
        peak_rss_kib: f[4] as u64,
    }
}

/// Runs one measurement and prints `wall_secs cpu_secs uncompressed stored peak_rss_kib`.
fn child(args: &[String]) {
    let mode = args[0].as_str();
    let n: u64 = args[1].parse().expect("item count");
    let format: Format = args[2].parse().expect("format");
    let compression: Compression = args[3].parse().expect("compression");
    let (wall, cpu, uncompressed, stored) = match mode {
        "pipeline" => pipeline(n, format, compression),
        "compressor" => compressor_alone(n, format, compression, segments() as usize, BATCH_PAGES),
        "compressor-1t" => compressor_alone(n, format, compression, 1, BATCH_PAGES),
        "compressor-interleaved" => {
            compressor_alone(n, format, compression, segments() as usize, 1)
        }
        "source" => source_alone(n, format),
        "encoder" => encoder_alone(n, format),
        "splitter" => splitter_alone(n),
        other => panic!("unknown mode {other}"),
    };
    println!("{wall} {cpu} {uncompressed} {stored} {}", peak_rss_kib());
}

fn pipeline(n: u64, format: Format, compression: Compression) -> (f64, f64, u64, u64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let store = MemoryStore::discarding();
        let backup = Backup::new(
            Arc::new(synthetic_source(n, format, page_items())),
            Arc::new(store.clone()),
            Tuning::default(),
        );
        let job = BackupJob::parse(
            &format!(
                r#"{{"table":"studentData","bucket":"bench-bucket","format":"{format}","compression":"{compression}","segments":{}}}"#,
                segments()
            ),
            &JobDefaults::default(),
        )
        .expect("job");
        let cpu0 = process_cpu_secs();
        let t0 = Instant::now();
        let manifest = backup.run(&job).await.expect("backup");
        let wall = t0.elapsed().as_secs_f64();
        let cpu = process_cpu_secs() - cpu0;
        assert_eq!(manifest.item_count, n, "every item backed up");
        assert_eq!(store.open_uploads(), 0);
        (wall, cpu, manifest.uncompressed_bytes, manifest.bytes)
    })
}

/// Distinct response bodies the wire formats' pages take turns among: 8 pages of 2,000 students
/// are 8 MB, so a body comes back only long after it left every compressor's window.
const DISTINCT_BODIES: usize = 8;

/// The synthetic table: for the wire formats, with its response bodies rendered before the clock
/// starts, since rendering them is DynamoDB's work, not the pipeline's.
fn synthetic_source(n: u64, format: Format, page_items: u64) -> SyntheticSource {
    if format.takes_wire_items() {
        SyntheticSource::prerendered("studentData", n, page_items, DISTINCT_BODIES)
    } else {
        SyntheticSource::new("studentData", n, page_items)
    }
}

/// The pages segment `segment` of `total` reads, in order, exactly as the pipeline's scan
/// receives them for `format` (wire bytes split out of a Scan response body for `dynamodb-json`,
/// SDK items otherwise): the stream that segment's file encodes and compresses.
fn segment_pages(
    n: u64,
    format: Format,
    segment: u32,
    total: u32,
) -> impl Iterator<Item = PageItems> {
    let source = synthetic_source(n, format, page_items());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    // `Some(start key)` while pages remain.
    let mut next = Some(None);
    std::iter::from_fn(move || {
        let request = ddb_backup::source::PageRequest {
            table: "studentData".into(),
            segment,
            total_segments: total,
            exclusive_start_key: next.take()?,
            consistent_read: false,
            limit: None,
            wire_items: format.takes_wire_items(),
        };
        let page = runtime
            .block_on(ddb_backup::source::TableSource::scan_page(
                &source, &request,
            ))
            .expect("page");
        next = page.last_evaluated_key.map(Some);
        Some(page.items)
    })
}

/// The synthetic source by itself: what stands in for DynamoDB and the SDK. For the wire path
/// that is producing the Scan response bodies (handing out a pre-rendered one; splitting them is
/// the pipeline's work, so it is not counted here); otherwise it is building the SDK items and
/// dropping them.
fn source_alone(n: u64, format: Format) -> (f64, f64, u64, u64) {
    let source = synthetic_source(n, format, page_items());
    let cpu0 = process_cpu_secs();
    let t0 = Instant::now();
    let step = page_items();
    let mut generated = 0u64;
    let mut start = 0;
    while start < n {
        let end = (start + step).min(n);
        if format.takes_wire_items() {
            std::hint::black_box(source.response_body(start, end));
        } else {
            let page: Vec<_> = (start..end)
                .map(ddb_backup::source::seed::student)
                .collect();
            drop(std::hint::black_box(page));
        }
        generated += end - start;
        start = end;
    }
    assert_eq!(generated, n);
    (t0.elapsed().as_secs_f64(), process_cpu_secs() - cpu0, 0, 1)
}

/// Cutting Scan response bodies into items by itself: the pipeline's first step for the wire
/// formats, timed over the synthetic source's bodies. MB are body bytes.
fn splitter_alone(n: u64) -> (f64, f64, u64, u64) {
    let step = page_items();
    let source = synthetic_source(n, Format::DynamodbJson, step);
    let (mut cpu, mut wall, mut bytes, mut items) = (0.0, 0.0, 0u64, 0u64);
    let mut start = 0;
    while start < n {
        let end = (start + step).min(n);
        let body = source.response_body(start, end);
        bytes += body.len() as u64;
        let (c0, t0) = (thread_cpu_secs(), Instant::now());
        let split = ddb_backup::codec::wire::split_scan_response(body).expect("split");
        cpu += thread_cpu_secs() - c0;
        wall += t0.elapsed().as_secs_f64();
        items += std::hint::black_box(split).items.len() as u64;
        start = end;
    }
    assert_eq!(items, n);
    (wall, cpu, bytes, bytes)
}

/// The synthetic table's key, as the pipeline passes it to the tabular encoders.
fn encode_options() -> EncodeOptions {
    EncodeOptions {
        key_attributes: vec!["id".to_string()],
        ..EncodeOptions::default()
    }
}

fn encode(encoder: &mut dyn RecordEncoder, page: &PageItems, out: &mut dyn Write) {
    match page {
        PageItems::Decoded(items) => encoder.encode_batch(items, out),
        PageItems::Wire(items) => encoder.encode_wire(items, out),
    }
    .expect("encode");
}

/// The encoder by itself over the same pages, timing only the encoding into a reused buffer.
fn encoder_alone(n: u64, format: Format) -> (f64, f64, u64, u64) {
    let mut encoder = encoder_for(format, &encode_options());
    let mut chunk = Vec::with_capacity(4 << 20);
    let (mut cpu, mut wall, mut bytes) = (0.0, 0.0, 0u64);
    // The whole table as one segment.
    for page in segment_pages(n, format, 0, 1) {
        chunk.clear();
        let (c0, t0) = (thread_cpu_secs(), Instant::now());
        encode(encoder.as_mut(), &page, &mut chunk);
        cpu += thread_cpu_secs() - c0;
        wall += t0.elapsed().as_secs_f64();
        bytes += chunk.len() as u64;
    }
    (wall, cpu, bytes, bytes)
}

/// Pages each compressor stream encodes ahead (untimed) before the streams compress them together:
/// enough that the compressor runs with its tables warm, as "alone" means.
const BATCH_PAGES: usize = 16;

/// The bound: compress the same encoded bytes as the pipeline, timing only the compressor. Each
/// segment's pages are one stream with its own compressor, as that segment's file is; thread `t`
/// compresses streams `t`, `t + threads`, … one after the other. With several threads the streams
/// really run side by side: each thread encodes a batch of pages ahead, then all compress their
/// batches at once (a barrier between batches), so no stream gets the machine to itself while
/// another is preparing input.
fn compressor_alone(
    n: u64,
    format: Format,
    compression: Compression,
    threads: usize,
    batch_pages: usize,
) -> (f64, f64, u64, u64) {
    struct Sink(u64);
    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let streams = segments().max(1);
    let threads = threads.clamp(1, streams as usize);
    // Only the slicing is needed here, not the rendered bodies.
    let table = SyntheticSource::new("studentData", n, page_items());
    // An empty segment still reads one (empty) page.
    let pages_of = |s: u32| {
        let range = table.segment_range(s, streams);
        (range.end - range.start).div_ceil(page_items()).max(1) as usize
    };
    let streams_of = |t: usize| (t as u32..streams).step_by(threads);
    // Every thread waits at the barrier equally often; one with fewer pages compresses nothing
    // in its last rounds.
    let rounds = (0..threads)
        .map(|t| {
            streams_of(t)
                .map(pages_of)
                .sum::<usize>()
                .div_ceil(batch_pages)
        })
        .max()
        .unwrap_or(0);
    let barrier = std::sync::Barrier::new(threads);
    let one = |t: usize| {
        let mut encoder = encoder_for(format, &encode_options());
        let mut pages = streams_of(t)
            .flat_map(|s| segment_pages(n, format, s, streams).map(move |page| (s, page)));
        let mut open: Option<(u32, Compressor<Sink>)> = None;
        let (mut uncompressed, mut stored, mut cpu, mut wall) = (0u64, 0u64, 0.0, 0.0);
        for _ in 0..rounds {
            let batch: Vec<(u32, Vec<u8>)> = pages
                .by_ref()
                .take(batch_pages)
                .map(|(s, page)| {
                    let mut chunk = Vec::new();
                    encode(encoder.as_mut(), &page, &mut chunk);
                    (s, chunk)
                })
                .collect();
            barrier.wait();
            let (c0, t0) = (thread_cpu_secs(), Instant::now());
            for (s, chunk) in &batch {
                if open.as_ref().map(|(open_s, _)| open_s) != Some(s) {
                    if let Some((_, done)) = open.take() {
                        stored += done.finish().expect("finish").0;
                    }
                    open = Some((
                        *s,
                        Compressor::new(compression, Sink(0)).expect("compressor"),
                    ));
                }
                if let Some((_, compressor)) = open.as_mut() {
                    compressor.write_all(chunk).expect("compress");
                }
                uncompressed += chunk.len() as u64;
            }
            cpu += thread_cpu_secs() - c0;
            wall += t0.elapsed().as_secs_f64();
        }
        let (c0, t0) = (thread_cpu_secs(), Instant::now());
        if let Some((_, done)) = open.take() {
            stored += done.finish().expect("finish").0;
        }
        cpu += thread_cpu_secs() - c0;
        wall += t0.elapsed().as_secs_f64();
        (wall, cpu, uncompressed, stored)
    };
    std::thread::scope(|scope| {
        let one = &one;
        let handles: Vec<_> = (0..threads).map(|t| scope.spawn(move || one(t))).collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("compressor thread"))
            .fold((0.0, 0.0, 0, 0), |acc: (f64, f64, u64, u64), r| {
                (acc.0.max(r.0), acc.1 + r.1, acc.2 + r.2, acc.3 + r.3)
            })
    })
}

fn process_cpu_secs() -> f64 {
    // SAFETY: `rusage` is plain integers, for which all zeroes is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we pass and has no other effects.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

fn thread_cpu_secs() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn num_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
