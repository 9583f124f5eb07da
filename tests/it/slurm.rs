//! Sharding on a real Slurm: scripts/slurm/start.sh brings up a one-node Slurm (slurmctld,
//! slurmd, munge from Debian's packages), a 4-task array runs `--shard auto` through
//! scripts/slurm/shard.sbatch, one task is cancelled mid-run (`scancel JOBID_2`) and
//! resubmitted alone (it resumes from its journal), a merge job waits on it with
//! `--dependency=afterok`, and the merged output equals a one-node run bit for bit. Skipped,
//! with the reason printed, only where Slurm is not installed or we are not root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use crate::common::{
    bin_dir, cannot_check, coordinator, run, stderr, wait_for, write_f32, RasterSpec,
};
use crate::compare::assert_same_raster;
use coordinator::journal::Scan;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Stops the Slurm started in `dir` when the test ends, however it ends.
struct Slurm {
    dir: PathBuf,
    conf: String,
}

impl Drop for Slurm {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo().join("scripts/slurm/stop.sh"))
            .arg(&self.dir)
            .status();
    }
}

impl Slurm {
    fn cmd(&self, name: &str) -> Command {
        let mut c = Command::new(name);
        let path = format!(
            "{}:{}",
            bin_dir().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        c.env("SLURM_CONF", &self.conf).env("PATH", path);
        c.env_remove("BLOCKSUM_WORKERS")
            .env_remove("BLOCKSUM_CONFIG")
            .env_remove("BLOCKSUM_WORKER_BIN");
        c
    }

    fn out(&self, c: &mut Command) -> String {
        let o = c.output().expect("running a Slurm command");
        assert!(o.status.success(), "{c:?}: {}", stderr(&o));
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }
}

fn why_not_here() -> Option<String> {
    for b in ["slurmctld", "slurmd", "munged", "sbatch"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {b}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Some(format!(
                "{b} is not installed (bash scripts/setup.sh --tests installs Slurm)"
            ));
        }
    }
    if !nix::unistd::Uid::effective().is_root() {
        return Some("a one-node Slurm here runs as root, and this test does not".into());
    }
    None
}

#[test]
fn a_cancelled_array_task_resubmitted_with_resume_merges_bit_identical() {
    if let Some(why) = why_not_here() {
        cannot_check(&why);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let sdir = tmp.path().join("slurm");
    // A port of our own, so that a Slurm on the default port is left alone.
    let port = 20000 + (std::process::id() % 10000) * 2;
    let o = Command::new("bash")
        .arg(repo().join("scripts/slurm/start.sh"))
        .arg(&sdir)
        .env("SLURM_PORT", port.to_string())
        .output()
        .unwrap();
    let started = String::from_utf8_lossy(&o.stdout).into_owned();
    let slurm = Slurm {
        dir: sdir.clone(),
        conf: started
            .trim()
            .strip_prefix("export SLURM_CONF=")
            .unwrap_or_default()
            .to_string(),
    };
    assert!(
        o.status.success() && !slurm.conf.is_empty(),
        "start.sh: {started}{}",
        stderr(&o)
    );

    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let input = work.join("in.tif");
    write_f32(
        &input,
        &RasterSpec {
            width: 2003,
            height: 2048,
            tile: Some(64),
            ..Default::default()
        },
    );
    let opts = ["-f", "8", "--chunk-mib", "0.5", "--workers", "1"];
    let reference = work.join("ref.tif");
    let o = run(coordinator()
        .arg("resample")
        .arg(&input)
        .arg(&reference)
        .args(opts));
    assert!(o.status.success(), "{}", stderr(&o));

    let out = work.join("out.tif");
    let shard_script = repo().join("scripts/slurm/shard.sbatch");
    // Each shard's third chunk sleeps 10 s on its first attempt: a window in which task 2
    // is surely running, with chunks journaled and chunks to go.
    let job = slurm.out(
        slurm
            .cmd("sbatch")
            .current_dir(&work)
            .args(["--parsable", "--array=0-3", "--export=ALL,SHARDS=4"])
            .arg(&shard_script)
            .arg(&input)
            .arg(&out)
            .args(opts)
            .args(["--inject-fault", "slow:2:1"]),
    );
    let journal2 = work.join("out.tif.shards/shard-2-of-4.journal");
    wait_for(
        Duration::from_secs(300),
        "task 2 journaling a chunk",
        || {
            Scan::read(&journal2)
                .ok()
                .flatten()
                .filter(|s| !s.records.is_empty())
                .map(|_| ())
        },
    );
    slurm.out(slurm.cmd("scancel").arg(format!("{job}_2")));
    wait_for(Duration::from_secs(300), "the array to end", || {
        let q = slurm.out(slurm.cmd("squeue").args(["-h", "-j", &job]));
        q.is_empty().then_some(())
    });
    let scan = Scan::read(&journal2).unwrap().unwrap();
    let (a, b) = scan.header.range;
    assert!(
        (scan.records.len() as u32) < b - a,
        "task 2 finished before its cancel landed: the test did not test a cancel"
    );
    let o = run(coordinator().arg("merge").arg(&out));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard 2 lacks chunk(s)"),
        "{}",
        stderr(&o)
    );

    // Task 2 alone again, same line: it resumes from its journal.
    let again = slurm.out(
        slurm
            .cmd("sbatch")
            .current_dir(&work)
            .args(["--parsable", "--array=2", "--export=ALL,SHARDS=4"])
            .arg(&shard_script)
            .arg(&input)
            .arg(&out)
            .args(opts),
    );
    let o = slurm
        .cmd("sbatch")
        .current_dir(&work)
        .args(["--parsable", "--wait"])
        .arg(format!("--dependency=afterok:{again}"))
        .arg(repo().join("scripts/slurm/merge.sbatch"))
        .arg(&out)
        .output()
        .unwrap();
    let logs: String = std::fs::read_dir(&work)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
        .map(|e| {
            format!(
                "== {}\n{}",
                e.file_name().to_string_lossy(),
                std::fs::read_to_string(e.path()).unwrap_or_default()
            )
        })
        .collect();
    assert!(o.status.success(), "merge job: {}\n{logs}", stderr(&o));
    let resumed_log = std::fs::read_to_string(work.join(format!("blocksum-shard-{again}_2.log")))
        .unwrap_or_default();
    assert!(
        resumed_log.contains(&format!("{} resumed from the journal", scan.records.len())),
        "{logs}"
    );
    assert_same_raster(&reference, &out);
    drop(slurm);
}
