//! The bulk `import` command: streams a partner feed file through the same use case as the
//! `importImages` mutation, batch by batch.
//!
//! Three stages joined by bounded channels, so memory holds at most a few batches whatever the
//! file's size: a reader thread parses the file record by record ([`feed`]) into batches; a
//! preparing task groups each batch by partner (a line's `partner_id`, else `--partner-id`),
//! each group in the order its partner first appears and its lines in file order, and
//! validates it ([`Ingestor::prepare_batch`]: URL canonicalization runs on a blocking thread);
//! the importer writes each group in one transaction that also curates the touched hotels
//! ([`Ingestor::import_prepared`]). So the next batch is parsed and validated while the current
//! one is written. Lines that cannot be read or are rejected go to the rejects file with their
//! number and reason; they never stop the import. Re-running a file changes nothing. The
//! summary tells the time spent per phase (see `BENCHMARKS.md`).
//!
//! `--snapshot`: after the whole file, the partner's sources that this run did not see are
//! retired, images left with no active source go inactive (hotelier uploads excepted), and
//! their hotels are curated.

pub mod feed;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::time::Instant;

use anyhow::Context as _;
use chrono::{DateTime, TimeDelta, Timelike, Utc};
use serde_json::json;
use tokio::sync::mpsc;

use crate::domain::catalog::PartnerId;
use crate::domain::ingest::{Outcome, RawItem};
use crate::service::ingest::{
    IngestError, IngestResult, Ingestor, MAX_BATCH_ITEMS, Prepared, Retirement,
};
use crate::service::write::Caller;
pub use feed::Format;
use feed::{FeedReader, Record};

/// Batches parsed ahead of the one being imported.
const BATCHES_AHEAD: usize = 2;
/// New images and links an import adds before it first refreshes the planner's statistics.
const REFRESH_STATISTICS_AFTER: u64 = 1_000;

/// How to import a feed.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The partner of lines that do not name one; lines naming another are rejected.
    pub partner: Option<PartnerId>,
    pub format: Format,
    /// Retire the partner's sources the feed does not contain (needs `partner`).
    pub snapshot: bool,
    /// Lines per batch and transaction (1..=[`MAX_BATCH_ITEMS`]).
    pub batch_size: usize,
}

/// Where an import stands (for a progress bar).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    /// Bytes of the input consumed.
    pub bytes: u64,
    /// Records read (blank lines aside).
    pub lines: u64,
}

/// Hears about an import as it goes: the command's progress bar, tests.
pub trait Observer {
    /// After every batch.
    fn progress(&mut self, _progress: Progress) {}
    /// The outcome of one line (every line, rejected ones included).
    fn line(&mut self, _line: u64, _outcome: Outcome) {}
}

/// Hears nothing.
impl Observer for () {}

/// What an import did.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// Records read (blank lines aside).
    pub lines: u64,
    /// Lines per outcome; unreadable lines count as REJECTED.
    pub outcomes: BTreeMap<Outcome, u64>,
    /// What `--snapshot` retired.
    pub retirement: Option<Retirement>,
    pub seconds: f64,
    /// Seconds per phase: the use case's batch phases, then `wait_input` (the importer
    /// waiting for the reader thread to parse the next batch).
    pub phases: Vec<(&'static str, f64)>,
}

impl Summary {
    pub fn count(&self, outcome: Outcome) -> u64 {
        self.outcomes.get(&outcome).copied().unwrap_or(0)
    }

    pub fn lines_per_second(&self) -> f64 {
        self.lines as f64 / self.seconds.max(1e-9)
    }
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} lines in {:.1}s ({:.0} lines/s):",
            self.lines,
            self.seconds,
            self.lines_per_second()
        )?;
        for outcome in Outcome::ALL {
            write!(f, " {} {outcome}", self.count(outcome))?;
            if outcome != Outcome::Rejected {
                f.write_str(",")?;
            }
        }
        if !self.phases.is_empty() {
            f.write_str("\nphases (s):")?;
            for (phase, seconds) in &self.phases {
                write!(f, " {phase} {seconds:.2}")?;
            }
        }
        if let Some(r) = &self.retirement {
            write!(
                f,
                "\nsnapshot: {} sources retired, {} images inactive, {} hotels changed",
                r.sources, r.images, r.hotels
            )?;
        }
        Ok(())
    }
}

/// One partner's lines of a batch: their numbers and items, in file order.
struct Group {
    partner: PartnerId,
    lines: Vec<u64>,
    items: Vec<RawItem>,
}

/// Imports the feed `input` (see the module doc). `rejects` gets one JSON line per rejected
/// line: `{"line": N, "reason": "..."}`, flushed after every batch.
///
/// Fails on I/O errors and unexpected store errors; what was committed before stays, and
/// running the same file again finishes the job.
pub async fn import_feed<R>(
    ingestor: &Ingestor,
    input: R,
    options: &ImportOptions,
    rejects: &mut dyn Write,
    observer: &mut dyn Observer,
) -> anyhow::Result<Summary>
where
    R: Read + Send + 'static,
{
    anyhow::ensure!(
        (1..=MAX_BATCH_ITEMS).contains(&options.batch_size),
        "the batch size must be between 1 and {MAX_BATCH_ITEMS}"
    );
    anyhow::ensure!(
        !options.snapshot || options.partner.is_some(),
        "a snapshot import needs --partner-id: a snapshot is one partner's complete feed"
    );
    let started = Instant::now();
    let cutoff = snapshot_cutoff(Utc::now());
    let caller = Caller::system("cli:import");
    let mut summary = Summary::default();

    let (sender, batches) = mpsc::channel(BATCHES_AHEAD);
    let format = options.format;
    let batch_size = options.batch_size;
    let reader =
        tokio::task::spawn_blocking(move || read_batches(input, format, batch_size, &sender));
    // The next batch is grouped and validated while the current one is written.
    let (ready, mut prepared) = mpsc::channel(1);
    let preparer = tokio::spawn(prepare_batches(
        ingestor.clone(),
        caller.clone(),
        options.partner,
        batches,
        ready,
    ));

    let before: Vec<f64> = ingestor.profile().seconds().iter().map(|p| p.1).collect();
    let mut waiting = 0.0;
    let mut added_at_refresh = 0;
    loop {
        let wait = Instant::now();
        let Some(batch) = prepared.recv().await else {
            break;
        };
        waiting += wait.elapsed().as_secs_f64();
        summary.lines += batch.lines;
        let at = batch.at;
        let mut report = Report {
            summary: &mut summary,
            rejects: &mut *rejects,
            observer: &mut *observer,
        };
        import_batch(ingestor, &caller, batch, &mut report).await?;
        // The batch has committed: its rejects reach the file now, so that an import killed
        // later leaves the reasons of every line it committed.
        rejects.flush().context("cannot write the rejects file")?;
        // Each time the images this import added have doubled, the planner learns the tables'
        // new sizes: it never works from tables much smaller than they are, and a re-import,
        // which adds nothing, never waits for it.
        let added = summary.count(Outcome::Created) + summary.count(Outcome::Linked);
        if added >= REFRESH_STATISTICS_AFTER && added >= 2 * added_at_refresh {
            added_at_refresh = added;
            if let Err(error) = ingestor.refresh_statistics().await {
                tracing::warn!(%error, "could not refresh the planner statistics");
            }
        }
        observer.progress(Progress {
            bytes: at,
            lines: summary.lines,
        });
    }
    drop(prepared);
    preparer.await.context("the batch preparer stopped")?;
    reader.await.context("the feed reader stopped")??;
    rejects.flush().context("cannot write the rejects file")?;

    if options.snapshot
        && let Some(partner) = options.partner
    {
        let retirement = ingestor
            .retire_unseen(&caller, partner, cutoff)
            .await
            .map_err(|e| failure(e, "retiring unseen sources"))?;
        summary.retirement = Some(retirement);
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.phases = ingestor
        .profile()
        .seconds()
        .into_iter()
        .zip(before)
        .map(|((phase, total), before)| (phase.as_str(), total - before))
        .chain([("wait_input", waiting)])
        .collect();
    Ok(summary)
}

/// The reader thread: parses `input` and sends batches of records with the bytes consumed.
fn read_batches<R: Read>(
    input: R,
    format: Format,
    batch_size: usize,
    sender: &mpsc::Sender<(Vec<Record>, u64)>,
) -> anyhow::Result<()> {
    let mut reader = FeedReader::new(input, format)?;
    let mut batch = Vec::with_capacity(batch_size);
    loop {
        let record = reader.next_record().context("cannot read the feed")?;
        let end = record.is_none();
        batch.extend(record);
        if batch.len() == batch_size || (end && !batch.is_empty()) {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(batch_size));
            if sender.blocking_send((full, reader.bytes_read())).is_err() {
                // The importer stopped (it failed): nothing left to do.
                return Ok(());
            }
        }
        if end {
            return Ok(());
        }
    }
}

/// One batch of records, grouped by partner and validated.
struct PreparedBatch {
    /// Records in the batch.
    lines: u64,
    /// Bytes of the input consumed after it.
    at: u64,
    /// Lines rejected before their partner's use case saw them.
    outcomes: Vec<(u64, Outcome, Option<String>)>,
    /// Each partner's lines (numbers, in file order) and their validated items.
    groups: Vec<(PartnerId, Vec<u64>, IngestResult<Prepared>)>,
}

/// The preparing stage: groups each batch of records by partner (a line's `partner_id`, else
/// `--partner-id`, each group in the order its partner first appears) and validates every
/// group, until the reader is done or the importer stops listening.
async fn prepare_batches(
    ingestor: Ingestor,
    caller: Caller,
    partner: Option<PartnerId>,
    mut batches: mpsc::Receiver<(Vec<Record>, u64)>,
    ready: mpsc::Sender<PreparedBatch>,
) {
    while let Some((records, at)) = batches.recv().await {
        let mut batch = PreparedBatch {
            lines: records.len() as u64,
            at,
            outcomes: Vec::new(),
            groups: Vec::new(),
        };
        let mut groups: Vec<Group> = Vec::new();
        for record in records {
            let line = record.line;
            let parsed = record
                .parsed
                .and_then(|l| Ok((partner_of(l.partner_id, partner)?, l.item)));
            let (partner, item) = match parsed {
                Ok(parsed) => parsed,
                Err(reason) => {
                    batch.outcomes.push((line, Outcome::Rejected, Some(reason)));
                    continue;
                }
            };
            let at = match groups.iter().position(|g| g.partner == partner) {
                Some(at) => at,
                None => {
                    groups.push(Group {
                        partner,
                        lines: Vec::new(),
                        items: Vec::new(),
                    });
                    groups.len() - 1
                }
            };
            groups[at].lines.push(line);
            groups[at].items.push(item);
        }
        for group in groups {
            let prepared = ingestor
                .prepare_batch(&caller, group.partner, group.items)
                .await;
            batch.groups.push((group.partner, group.lines, prepared));
        }
        if ready.send(batch).await.is_err() {
            // The importer stopped (it failed): nothing left to do.
            return;
        }
    }
}

/// Imports one prepared batch, one use-case call per partner. Outcomes are reported in line
/// order.
async fn import_batch(
    ingestor: &Ingestor,
    caller: &Caller,
    batch: PreparedBatch,
    report: &mut Report<'_>,
) -> anyhow::Result<()> {
    let mut outcomes = batch.outcomes;
    for (partner, lines, prepared) in batch.groups {
        let imported = match prepared {
            Ok(prepared) => ingestor.import_prepared(caller, prepared).await,
            Err(error) => Err(error),
        };
        match imported {
            Ok(results) => outcomes.extend(results.into_iter().map(|result| {
                let line = lines.get(result.index).copied().unwrap_or(0);
                (line, result.outcome, result.reason)
            })),
            Err(IngestError::User(error)) => {
                let reason = format!("partner {partner}: {}", error.message);
                outcomes.extend(
                    lines
                        .iter()
                        .map(|line| (*line, Outcome::Rejected, Some(reason.clone()))),
                );
            }
            Err(other) => {
                let first = lines.first().copied().unwrap_or(0);
                return Err(failure(
                    other,
                    &format!("importing the batch from line {first}"),
                ));
            }
        }
    }
    outcomes.sort_by_key(|(line, _, _)| *line);
    for (line, outcome, reason) in outcomes {
        report.record(line, outcome, reason.as_deref())?;
    }
    Ok(())
}

/// The partner of a line: its own `partner_id`, else `--partner-id`; they must agree.
fn partner_of(named: Option<i64>, given: Option<PartnerId>) -> Result<PartnerId, String> {
    let named = named
        .map(|id| PartnerId::new(id).ok_or_else(|| format!("partner_id `{id}` is not positive")))
        .transpose()?;
    match (named, given) {
        (Some(named), Some(given)) if named != given => Err(format!(
            "partner_id {named} does not match --partner-id {given}"
        )),
        (Some(partner), _) | (None, Some(partner)) => Ok(partner),
        (None, None) => Err("the line has no partner_id and no --partner-id was given".to_owned()),
    }
}

/// Where a batch's outcomes go.
struct Report<'a> {
    summary: &'a mut Summary,
    rejects: &'a mut dyn Write,
    observer: &'a mut dyn Observer,
}

impl Report<'_> {
    /// Counts a line's outcome, tells the observer, and writes a rejected line's reason.
    fn record(&mut self, line: u64, outcome: Outcome, reason: Option<&str>) -> anyhow::Result<()> {
        *self.summary.outcomes.entry(outcome).or_default() += 1;
        self.observer.line(line, outcome);
        if outcome == Outcome::Rejected {
            let reason = reason.unwrap_or("rejected");
            writeln!(
                self.rejects,
                "{}",
                json!({ "line": line, "reason": reason })
            )
            .context("cannot write the rejects file")?;
        }
        Ok(())
    }
}

/// An unexpected failure of the use case, with its cause for the operator.
fn failure(error: IngestError, doing: &str) -> anyhow::Error {
    let cause = match &error {
        IngestError::Unexpected(store) => format!("{store}: {:?}", store),
        other => other.to_string(),
    };
    anyhow::anyhow!("{doing} failed: {cause}")
}

/// Sources last seen before this instant were not seen by a run that started at `started`.
/// One second earlier than the start, to the second: MySQL keeps whole seconds (rounding), so
/// a source seen in the run's first second may be stored up to half a second before the start.
fn snapshot_cutoff(started: DateTime<Utc>) -> DateTime<Utc> {
    started.with_nanosecond(0).unwrap_or(started) - TimeDelta::seconds(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(partner: Option<i64>) -> ImportOptions {
        ImportOptions {
            partner: partner.and_then(PartnerId::new),
            format: Format::Jsonl,
            snapshot: false,
            batch_size: 1_000,
        }
    }

    #[test]
    fn a_line_s_partner_is_its_own_or_the_command_s_and_they_must_agree() {
        let cases = [
            (Some(2), None, Ok(2)),
            (None, Some(3), Ok(3)),
            (Some(3), Some(3), Ok(3)),
            (
                Some(2),
                Some(3),
                Err("partner_id 2 does not match --partner-id 3"),
            ),
            (
                None,
                None,
                Err("the line has no partner_id and no --partner-id was given"),
            ),
        ];
        for (named, given, want) in cases {
            assert_eq!(
                partner_of(named, options(given).partner).map(PartnerId::get),
                want.map_err(str::to_owned),
                "{named:?} {given:?}"
            );
        }
    }

    #[test]
    fn the_snapshot_cutoff_is_a_whole_second_before_the_start() {
        let started: DateTime<Utc> = "2026-01-02T03:04:05.678Z".parse().unwrap();
        assert_eq!(
            snapshot_cutoff(started),
            "2026-01-02T03:04:04Z".parse::<DateTime<Utc>>().unwrap()
        );
    }
}
