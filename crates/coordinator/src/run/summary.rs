//! The summary line a run prints of each output it wrote, formatted here once for a single
//! run and a batch: what was written (`head`), and what came from an earlier run's journal
//! (`resumed`).

use super::*;
use crate::shard::Shard;

/// What one output's line names: the output, its size, bands and type, and its chunks; or,
/// for a shard, its part of the plan and where its journal went (`to`).
pub(super) fn head(
    output: &Path,
    prep: &Prepared,
    shard: Option<(Shard, (u32, u32), &Path)>,
) -> String {
    let p = &prep.plan;
    match shard {
        None => format!(
            "wrote {} ({}x{}, {} band(s), {}): {} chunks",
            output.display(),
            p.out_width,
            p.out_height,
            p.bands,
            prep.out_type,
            p.chunks.len()
        ),
        Some((s, (a, b), to)) => format!(
            "wrote shard {}/{} of {} (chunks {a}..{b} of {}) to {}",
            s.index,
            s.count,
            output.display(),
            p.chunks.len(),
            to.display()
        ),
    }
}

/// The note on chunks taken from an earlier run's journal (none when there were none).
pub(super) fn resumed(resumed: usize, shard: bool) -> String {
    match (resumed, shard) {
        (0, _) => String::new(),
        (n, true) => format!(", {n} resumed from the journal"),
        (n, false) => format!(", {n} chunk(s) resumed from the journal"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resumed_chunks_are_named_only_when_there_are_some() {
        assert_eq!(resumed(0, false), "");
        assert_eq!(resumed(3, false), ", 3 chunk(s) resumed from the journal");
        assert_eq!(resumed(3, true), ", 3 resumed from the journal");
    }
}
