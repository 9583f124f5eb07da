//! Shards: `--shard I/N` and `--shard auto` (the index from a batch engine's environment),
//! which plan chunks shard I owns, and where its journal lives. A shard owns whole rows of
//! chunks (a contiguous range of chunk ids), so its output is a horizontal band of the
//! raster; it does not run anything itself (that is `run`) or assemble shards (`merge`).

use std::path::{Path, PathBuf};

use crate::{error::CoordError, plan::Plan};

/// `--shard` as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardArg {
    /// `I/N`.
    Fixed(u32, u32),
    /// `auto`: from the environment of an array job.
    Auto,
}

/// Parses `I/N` (0 <= I < N) or `auto`.
pub fn parse_shard(s: &str) -> Result<ShardArg, String> {
    if s == "auto" {
        return Ok(ShardArg::Auto);
    }
    let bad = || format!("'{s}' is not I/N (shard I of N, 0 <= I < N) or auto");
    let (i, n) = s.split_once('/').ok_or_else(bad)?;
    let (i, n) = (
        i.trim().parse::<u32>().map_err(|_| bad())?,
        n.trim().parse::<u32>().map_err(|_| bad())?,
    );
    if n == 0 || i >= n {
        return Err(bad());
    }
    Ok(ShardArg::Fixed(i, n))
}

/// A resolved shard: I of N.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

fn var(env: &dyn Fn(&str) -> Option<String>, name: &str) -> Result<Option<u32>, CoordError> {
    match env(name) {
        None => Ok(None),
        Some(v) if v.trim().is_empty() => Ok(None),
        Some(v) => v.trim().parse::<u32>().map(Some).map_err(|_| {
            CoordError::Usage(format!("--shard auto: {name}='{v}' is not a whole number"))
        }),
    }
}

/// Resolves `--shard` and `--shards` against the environment `env`.
///
/// `auto` reads, in order: Slurm (`SLURM_ARRAY_TASK_ID`; without `--shards` the index is
/// counted from `SLURM_ARRAY_TASK_MIN` and N is `SLURM_ARRAY_TASK_COUNT`; with `--shards N`
/// the task id itself is the shard, so a single task resubmitted as `--array=2` is shard 2),
/// Kubernetes (`JOB_COMPLETION_INDEX`, N from `--shards`), AWS Batch
/// (`AWS_BATCH_JOB_ARRAY_INDEX`, N from `--shards`). Refused (exit 2) when none is set, or
/// when N is known from nowhere.
pub fn resolve(
    arg: Option<ShardArg>,
    shards: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Shard>, CoordError> {
    let usage = |m: String| Err(CoordError::Usage(m));
    let (index, count) = match arg {
        None if shards.is_some() => {
            return usage("--shards N goes with --shard auto".into());
        }
        None => return Ok(None),
        Some(ShardArg::Fixed(i, n)) => {
            if shards.is_some_and(|s| s != n) {
                return usage(format!("--shard {i}/{n} and --shards disagree on N"));
            }
            (i, n)
        }
        Some(ShardArg::Auto) => {
            if let Some(id) = var(env, "SLURM_ARRAY_TASK_ID")? {
                match shards {
                    Some(n) => (id, n),
                    None => {
                        let min = var(env, "SLURM_ARRAY_TASK_MIN")?.unwrap_or(0);
                        let Some(n) = var(env, "SLURM_ARRAY_TASK_COUNT")? else {
                            return usage("--shard auto: SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not: pass --shards N".into());
                        };
                        (id.saturating_sub(min), n)
                    }
                }
            } else if let Some(id) = var(env, "JOB_COMPLETION_INDEX")? {
                let Some(n) = shards else {
                    return usage("--shard auto under Kubernetes (JOB_COMPLETION_INDEX) needs --shards N (the Job's completions)".into());
                };
                (id, n)
            } else if let Some(id) = var(env, "AWS_BATCH_JOB_ARRAY_INDEX")? {
                let Some(n) = shards else {
                    return usage("--shard auto under AWS Batch (AWS_BATCH_JOB_ARRAY_INDEX) needs --shards N (the array size)".into());
                };
                (id, n)
            } else {
                return usage("--shard auto found no array index in the environment (SLURM_ARRAY_TASK_ID, JOB_COMPLETION_INDEX or AWS_BATCH_JOB_ARRAY_INDEX): pass --shard I/N".into());
            }
        }
    };
    if count == 0 || index >= count {
        return usage(format!(
            "shard {index} of {count} does not exist (shards are numbered 0 to N-1)"
        ));
    }
    Ok(Some(Shard { index, count }))
}

/// Shard `s`'s plan chunk ids, `start..end`: a balanced share of the plan's rows of chunks.
pub fn range(plan: &Plan, s: Shard) -> (u32, u32) {
    let per_row = plan.per_row.max(1);
    let rows = plan.chunks.len() as u64 / per_row;
    let (i, n) = (u64::from(s.index), u64::from(s.count));
    let (r0, r1) = (i * rows / n, (i + 1) * rows / n);
    ((r0 * per_row) as u32, (r1 * per_row) as u32)
}

/// `OUTPUT.shards/`: where the shards of OUTPUT keep their journals.
pub fn dir_for(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".shards");
    PathBuf::from(s)
}

/// Shard I of N's journal in `dir`.
pub fn journal_in(dir: &Path, s: Shard) -> PathBuf {
    dir.join(format!("shard-{}-of-{}.journal", s.index, s.count))
}

/// The shard a journal's file name stands for.
pub fn parse_journal_name(name: &str) -> Option<Shard> {
    parse_name(name, ".journal")
}

/// The shard a GeoTIFF's file name stands for (`merge --vrt` writes one per shard beside its
/// journal).
pub fn parse_tif_name(name: &str) -> Option<Shard> {
    parse_name(name, ".tif")
}

fn parse_name(name: &str, ext: &str) -> Option<Shard> {
    let rest = name.strip_prefix("shard-")?.strip_suffix(ext)?;
    let (i, n) = rest.split_once("-of-")?;
    let (index, count) = (i.parse().ok()?, n.parse().ok()?);
    (index < count).then_some(Shard { index, count })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn auto_reads_each_engine() {
        let slurm = env(&[
            ("SLURM_ARRAY_TASK_ID", "5"),
            ("SLURM_ARRAY_TASK_MIN", "4"),
            ("SLURM_ARRAY_TASK_COUNT", "3"),
        ]);
        let s = resolve(Some(ShardArg::Auto), None, &slurm)
            .unwrap()
            .unwrap();
        assert_eq!((s.index, s.count), (1, 3));
        // With --shards, the task id is the shard (a resubmitted single task).
        let one = env(&[
            ("SLURM_ARRAY_TASK_ID", "2"),
            ("SLURM_ARRAY_TASK_MIN", "2"),
            ("SLURM_ARRAY_TASK_COUNT", "1"),
        ]);
        let s = resolve(Some(ShardArg::Auto), Some(4), &one)
            .unwrap()
            .unwrap();
        assert_eq!((s.index, s.count), (2, 4));
        let k8s = env(&[("JOB_COMPLETION_INDEX", "7")]);
        let s = resolve(Some(ShardArg::Auto), Some(8), &k8s)
            .unwrap()
            .unwrap();
        assert_eq!((s.index, s.count), (7, 8));
        assert!(resolve(Some(ShardArg::Auto), None, &k8s).is_err());
        let aws = env(&[("AWS_BATCH_JOB_ARRAY_INDEX", "0")]);
        let s = resolve(Some(ShardArg::Auto), Some(2), &aws)
            .unwrap()
            .unwrap();
        assert_eq!((s.index, s.count), (0, 2));
        let none = env(&[]);
        let e = resolve(Some(ShardArg::Auto), Some(2), &none).unwrap_err();
        assert_eq!(e.exit_code(), protocol::exit::USAGE);
        assert!(resolve(
            Some(ShardArg::Auto),
            Some(8),
            &env(&[("JOB_COMPLETION_INDEX", "8")])
        )
        .is_err());
    }

    #[test]
    fn parses_and_names_journals() {
        assert_eq!(parse_shard("3/8"), Ok(ShardArg::Fixed(3, 8)));
        assert!(
            parse_shard("8/8").is_err() && parse_shard("1/0").is_err() && parse_shard("x").is_err()
        );
        let s = Shard { index: 3, count: 8 };
        let p = journal_in(Path::new("d"), s);
        assert_eq!(
            parse_journal_name(p.file_name().unwrap().to_str().unwrap()),
            Some(s)
        );
        assert_eq!(parse_tif_name("shard-3-of-8.tif"), Some(s));
        assert_eq!(parse_tif_name("shard-3-of-8.journal"), None);
    }

    #[test]
    fn shards_partition_the_rows() {
        for (w, h, cw) in [(100u64, 90u64, 100u64), (100, 90, 30)] {
            let p = crate::plan::plan((w, h), (10, 10), 2, (1, 4), cw * 10 * 4, None);
            for n in [1u32, 2, 3, 7, 40] {
                let mut next = 0;
                for i in 0..n {
                    let (a, b) = range(&p, Shard { index: i, count: n });
                    assert_eq!(a, next);
                    next = b;
                }
                assert_eq!(next as usize, p.chunks.len());
            }
        }
    }
}
