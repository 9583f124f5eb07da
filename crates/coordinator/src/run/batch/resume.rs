//! `--resume` and `--shard` for a batch: each output keeps its own journal, by the single
//! run's rules and in its format (`run::durable`, `crate::journal`): OUTPUT.journal beside
//! each output in DIR, or OUTPUT.shards/shard-I-of-N.journal for shard I of N. A batch shard
//! is shard I of N of every input (each input's plan split as a single run splits it), so
//! `coordinator merge DIR/NAME` assembles each output as it does a single run's.
//!
//! With `--resume`, an output the interrupted batch had already committed (in place, its
//! journal removed) is kept when it matches this input's plan, and nothing of it is
//! recomputed. This module decides, per input, what the run has left to do; the writing is
//! `sink`'s.

use super::sink::{Journal, Pending};
use super::*;

/// Where an input's journal and lock are, found before the input is opened.
pub(super) struct Place {
    pub(super) journal: PathBuf,
    /// What the run writes and locks: the output, or a shard's journal.
    pub(super) lock: PathBuf,
    /// `--resume`, no journal, and the output in place: committed by the interrupted batch.
    pub(super) committed: bool,
    /// Whether an existing file under `lock` is left to `begin` to judge rather than refused.
    pub(super) may_exist: bool,
}

impl Place {
    pub(super) fn of(one: OneRun<'_>) -> Result<Place, CoordError> {
        let cfg = one.cfg;
        let journal = durable::journal_path(one)?;
        let journal_there = std::fs::symlink_metadata(&journal).is_ok();
        let committed = cfg.durability.resume
            && cfg.durability.shard.is_none()
            && !cfg.output.overwrite
            && !journal_there
            && std::fs::symlink_metadata(&one.io.output).is_ok_and(|m| m.is_file());
        let lock = match cfg.durability.shard {
            None => one.io.output.clone(),
            Some(_) => journal.clone(),
        };
        Ok(Place {
            may_exist: cfg.output.overwrite
                || (journal_there && (cfg.durability.resume || cfg.durability.shard.is_some()))
                || committed,
            journal,
            lock,
            committed,
        })
    }
}

/// What one input has left.
pub(super) enum Begun {
    /// Committed by the interrupted batch and matching: nothing to do.
    Kept,
    /// Its remaining chunks (in `job`) and the output that takes them.
    Run {
        job: Box<BlockAggJob>,
        pending: Box<Pending>,
    },
}

/// Locks the input's output, opens its journal (continuing the interrupted run's with
/// `--resume`, after checking it is this plan's, whose chunk grid `p` then takes) and keeps
/// in its job the chunks no journal holds.
pub(super) fn begin(one: OneRun<'_>, p: &mut Prepared, t: Place) -> Result<Begun, CoordError> {
    let cfg = one.cfg;
    if t.committed {
        check_committed(one, p)?;
        tracing::info!(
            "--resume: '{}' was committed by the interrupted run: kept",
            one.io.output.display()
        );
        return Ok(Begun::Kept);
    }
    let staging = output::Staging::lock(&t.lock)?;
    if cfg.durability.resume && cfg.durability.shard.is_none() {
        // Killed between the commit and the journal's removal: the output is complete, and
        // the journal beside it goes (the single run's test, under the lock).
        let digest = crate::run::job::plan_digest(one, p);
        if durable::already_committed(&one.io.output, &t.journal, &digest)?.is_some() {
            tracing::info!(
                "--resume: '{}' was committed by the interrupted run: kept",
                one.io.output.display()
            );
            return Ok(Begun::Kept);
        }
    }
    let durable::Earlier {
        scan: earlier,
        range,
        replace,
    } = durable::earlier(one, p, &t.journal)?;
    let p = &*p;
    let spec = durable::output_spec(one, p);
    let (job, opened) = durable::journal_job(one, p, (&t.journal, &spec), earlier, range)?;
    let remaining = job.tasks.iter().map(|ch| ch.out.pixels()).sum();
    let mut pending = Pending::new(
        spec,
        staging,
        job.metadata().to_vec(),
        Journal {
            path: t.journal,
            writer: opened.writer,
            earlier: opened.earlier,
            shard: cfg.durability.shard.is_some(),
            replace,
        },
        remaining,
    );
    pending.writeback = cfg.output.format == crate::cog::OutputFormat::GTiff;
    Ok(Begun::Run {
        job: Box::new(job),
        pending: Box::new(pending),
    })
}

/// The output the interrupted batch committed must be this input's: the same test as a
/// single run's `--resume` over a committed output (`durable::committed_by`: the plan's
/// digest in its metadata, no quarantined chunk); anything else is somebody's file, refused
/// as any existing output is.
fn check_committed(one: OneRun<'_>, p: &Prepared) -> Result<(), CoordError> {
    if durable::committed_by(&one.io.output, &crate::run::job::plan_digest(one, p)) {
        Ok(())
    } else {
        Err(CoordError::OutputExists(one.io.output.clone()))
    }
}
