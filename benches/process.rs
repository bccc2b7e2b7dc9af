//! The image-processing benchmark's tools (issue 16 item 11), driven by `benches/process.sh`:
//!
//! - `corpus DIR BASE_URL [JPEGS] [OTHERS]`: writes a generated corpus into `DIR/files/`
//!   (`JPEGS` photo-like 1600x1067 JPEGs, default 2,000, plus `OTHERS` PNGs and as many WebPs,
//!   default 50 each, at 1200x800) and `DIR/feed.jsonl`, a partner feed whose lines point at
//!   `BASE_URL/<file>` and declare no dimensions, hashes or scores (the service measures).
//! - `floor DIR [THREADS]`: the machine's floor: the same decode + hash + score work
//!   (`domain::measure::measure`) over the same files, read into memory first, in a tight loop
//!   on `THREADS` threads (default: every core), no HTTP, no database. Prints images/s and MB/s.
//! - `serve DIR PORT`: serves `DIR/files/` from memory over HTTP on 127.0.0.1:`PORT` (the
//!   partner's CDN), until killed.
//!
//! The pictures are distinct (the service would merge identical bytes) and about the size of
//! real hotel photos: smooth scenes with sharp shapes and a little sensor-like noise, which is
//! what makes a JPEG of this size weigh a few hundred kilobytes.

use std::collections::HashMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::{Context, bail};
use image::{ImageFormat, RgbImage};
use images_subgraph::domain::measure::{MeasureLimits, measure, samples};

/// The service's allocator (see `src/main.rs`): the floor does the service's work the way the
/// service does it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; the tools take positional arguments only.
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    match (arg(0), arg(1)) {
        (Some("corpus"), Some(dir)) => {
            let base = arg(2).context("corpus DIR BASE_URL [JPEGS] [OTHERS]")?;
            let jpegs = arg(3).map_or(Ok(2000), str::parse)?;
            let others = arg(4).map_or(Ok(50), str::parse)?;
            corpus(Path::new(dir), base, jpegs, others)
        }
        (Some("floor"), Some(dir)) => {
            let threads = match arg(2) {
                Some(n) => n.parse()?,
                None => std::thread::available_parallelism()?.get(),
            };
            floor(Path::new(dir), threads)
        }
        (Some("serve"), Some(dir)) => {
            let port: u16 = arg(2).context("serve DIR PORT")?.parse()?;
            serve(Path::new(dir), port)
        }
        // `cargo bench` without arguments (as `cargo bench` of every bench does): nothing to run.
        (None, _) => Ok(()),
        _ => bail!(
            "usage: process corpus DIR BASE_URL [JPEGS] [OTHERS] | floor DIR [THREADS] | serve DIR PORT"
        ),
    }
}

/// A photo-like picture of `width` x `height`, different for each `seed`.
fn picture(width: u32, height: u32, seed: u32) -> RgbImage {
    let mut image = samples::scene(width, height, seed % 97);
    // A cheap deterministic noise (xorshift), different per picture: the distinct bytes.
    let mut state = u64::from(seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for pixel in image.pixels_mut() {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let noise = (state % 13) as i16 - 6;
        for channel in pixel.0.iter_mut() {
            *channel = (i16::from(*channel) + noise).clamp(0, 255) as u8;
        }
    }
    image
}

fn corpus(dir: &Path, base: &str, jpegs: u32, others: u32) -> anyhow::Result<()> {
    let files = dir.join("files");
    std::fs::create_dir_all(&files)?;
    let mut plan: Vec<(String, u32, u32, ImageFormat)> = (0..jpegs)
        .map(|i| (format!("p{i:05}.jpg"), 1600, 1067, ImageFormat::Jpeg))
        .collect();
    for i in 0..others {
        plan.push((format!("g{i:05}.png"), 1200, 800, ImageFormat::Png));
        plan.push((format!("w{i:05}.webp"), 1200, 800, ImageFormat::WebP));
    }
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()?.get();
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| -> anyhow::Result<()> {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((name, width, height, format)) = plan.get(i) else {
                        return Ok(());
                    };
                    let path = files.join(name);
                    if !path.exists() {
                        let bytes = samples::encode(&picture(*width, *height, i as u32), *format);
                        std::fs::write(&path, bytes)?;
                    }
                }
            });
        }
    });
    let mut feed = std::io::BufWriter::new(std::fs::File::create(dir.join("feed.jsonl"))?);
    let base = base.trim_end_matches('/');
    for (i, (name, ..)) in plan.iter().enumerate() {
        // Two partners, 20 pictures a hotel.
        let line = serde_json::json!({
            "partner_id": 1 + i % 2,
            "hotel_id": 1 + i / 20,
            "url": format!("{base}/{name}"),
            "partner_image_ref": name,
            "legacy_id": format!("B-{i}"),
        });
        writeln!(feed, "{line}")?;
    }
    feed.flush()?;
    let bytes: u64 = read_corpus(dir)?.iter().map(|(_, b)| b.len() as u64).sum();
    println!(
        "corpus: {} files, {:.1} MB in {}",
        plan.len(),
        bytes as f64 / 1e6,
        files.display()
    );
    Ok(())
}

fn read_corpus(dir: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("files"))
        .with_context(|| format!("{}: run `corpus` first", dir.display()))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            Ok((name.into_owned(), std::fs::read(&path)?))
        })
        .collect()
}

fn floor(dir: &Path, threads: usize) -> anyhow::Result<()> {
    let files = read_corpus(dir)?;
    let bytes: usize = files.iter().map(|(_, b)| b.len()).sum();
    let next = AtomicUsize::new(0);
    let started = Instant::now();
    let failures = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut failures = 0;
                    while let Some((_, file)) = files.get(next.fetch_add(1, Ordering::Relaxed)) {
                        if measure(file, MeasureLimits::default()).is_err() {
                            failures += 1;
                        }
                    }
                    failures
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or(usize::MAX))
            .sum::<usize>()
    });
    let seconds = started.elapsed().as_secs_f64();
    if failures > 0 {
        bail!("{failures} files did not measure");
    }
    println!(
        "floor: {} images, {:.1} MB, {threads} threads: {:.2} s, {:.1} images/s, {:.1} MB/s",
        files.len(),
        bytes as f64 / 1e6,
        seconds,
        files.len() as f64 / seconds,
        bytes as f64 / 1e6 / seconds,
    );
    Ok(())
}

fn serve(dir: &Path, port: u16) -> anyhow::Result<()> {
    use axum::extract::{Path as UrlPath, State};
    use axum::http::{StatusCode, header};
    use axum::response::IntoResponse;

    let files: Arc<HashMap<String, axum::body::Bytes>> = Arc::new(
        read_corpus(dir)?
            .into_iter()
            .map(|(name, bytes)| (name, bytes.into()))
            .collect(),
    );
    async fn file(
        State(files): State<Arc<HashMap<String, axum::body::Bytes>>>,
        UrlPath(name): UrlPath<String>,
    ) -> axum::response::Response {
        let kind = match name.rsplit_once('.').map(|(_, ext)| ext) {
            Some("jpg") => "image/jpeg",
            Some("png") => "image/png",
            Some("webp") => "image/webp",
            _ => "application/octet-stream",
        };
        match files.get(&name) {
            Some(bytes) => ([(header::CONTENT_TYPE, kind)], bytes.clone()).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }
    let app = axum::Router::new()
        .route("/{name}", axum::routing::get(file))
        .with_state(files);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(async {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
            println!("serving on http://127.0.0.1:{port}/");
            axum::serve(listener, app).await?;
            Ok(())
        })
}
