//! The chunk journal end to end: SIGKILL the real coordinator at many points of a run on a
//! raster of a few hundred MiB (the commit included) and resume each time; a torn and a
//! corrupt journal; the refusals; shards of 1, 2, 3 and 7 merged (and as a VRT) against a
//! one-node run; `merge` naming what is missing; `--shard auto` from the environment.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use crate::common::{
    coordinator, records, resample_cmd, run, stderr, wait_for, write_f32, RasterSpec,
};
use crate::compare::assert_same_raster;
use coordinator::journal::Scan;
use gdal::{
    raster::{Buffer, RasterCreationOptions},
    DriverManager,
};

/// A raster of `w x h` Float32 pixels, uncompressed and tiled, written in strips: cheap
/// to make and to decode, so that a debug build gets through a few hundred MiB.
fn write_big(path: &Path, w: usize, h: usize) {
    let driver = DriverManager::get_driver_by_name("GTiff").unwrap();
    let opts = RasterCreationOptions::from_iter(["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256"]);
    let mut ds = driver
        .create_with_band_type_with_options::<f32, _>(path, w, h, 1, &opts)
        .unwrap();
    ds.set_geo_transform(&[10.0, 0.001, 0.0, 50.0, 0.0, -0.001])
        .unwrap();
    let mut band = ds.rasterband(1).unwrap();
    band.set_no_data_value(Some(-9999.0)).unwrap();
    let rows = 256;
    for y0 in (0..h).step_by(rows) {
        let n = rows.min(h - y0);
        let mut data = Vec::with_capacity(w * n);
        for y in y0..y0 + n {
            for x in 0..w {
                let k = (x * 7919 + y * 104_729) % 1000;
                data.push(if k < 90 {
                    -9999.0
                } else {
                    k as f32 * 0.25 - 60.0
                });
            }
        }
        let mut buf = Buffer::new((w, n), data);
        band.write((0, y0 as isize), (w, n), &mut buf).unwrap();
    }
}

/// `N chunk(s) journaled` from a run's `-v` log: what it resumed.
fn resumed_in_log(log: &str) -> Option<usize> {
    let line = log.lines().find(|l| l.contains("resuming from"))?;
    let tail = line.rsplit(": ").next()?;
    tail.split_whitespace().next()?.parse().ok()
}

#[test]
fn sigkill_at_many_points_then_resume_gives_the_uninterrupted_output() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("big.tif");
    // 8192 x 8192 Float32: 256 MiB of pixels, 64 chunks of 4 MiB.
    write_big(&input, 8192, 8192);
    let reference = dir.path().join("ref.tif");
    let args = |out: &Path| -> Vec<String> {
        vec![
            "--workers".into(),
            "2".into(),
            "resample".into(),
            input.display().to_string(),
            out.display().to_string(),
            "-f".into(),
            "8".into(),
            "--chunk-mib".into(),
            "4".into(),
        ]
    };
    let o = run(coordinator().args(args(&reference)));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        !dir.path().join("ref.tif.journal").exists(),
        "journal removed after commit"
    );

    let out = dir.path().join("out.tif");
    let journal = dir.path().join("out.tif.journal");
    let total = 64;
    // Kill points: records in the journal; 0 is "at once"; `total` lands in the close
    // and commit (the GeoTIFF's flush, reopen, sync and rename).
    let points = [0usize, 3, 9, 16, 24, 31, 38, 45, 52, 58, total];
    let mut survived: Option<usize> = None;
    let mut kills = 0;
    for &k in &points {
        let mut cmd = coordinator();
        cmd.arg("-v").args(args(&out)).arg("--resume");
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let finished = wait_for(Duration::from_secs(600), "the kill point", || {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(true);
            }
            (k == 0 || records(&journal) >= k).then_some(false)
        });
        if !finished {
            nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            )
            .unwrap();
            kills += 1;
        }
        let o = child.wait_with_output().unwrap();
        let log = String::from_utf8_lossy(&o.stderr).into_owned();
        // Every record that reached the journal before the kill was resumed, none computed
        // again.
        if let Some(s) = survived.filter(|&s| s > 0) {
            // (A run killed before it logged says nothing; one that finished must have.)
            match resumed_in_log(&log) {
                Some(r) => assert_eq!(r, s, "resumed count, run to point {k}:\n{log}"),
                None => assert!(!finished, "no resume logged:\n{log}"),
            }
        }
        if finished {
            assert!(o.status.success(), "{log}");
            break;
        }
        if out.exists() && !journal.exists() {
            // Killed after the commit and the journal's removal: the output is complete.
            survived = None;
            break;
        }
        let after = records(&journal);
        assert!(
            after >= k,
            "a SIGKILL lost journaled chunks: {after} left, {k} seen before the kill"
        );
        survived = Some(after);
    }
    assert!(kills >= 10, "only {kills} kill(s) landed");
    if !out.exists() || journal.exists() {
        // Killed in the commit: the resumed run finishes it.
        let rep = dir.path().join("last.json");
        let o = run(coordinator()
            .args(args(&out))
            .args(["--resume", "--report"])
            .arg(&rep));
        assert!(o.status.success(), "{}", stderr(&o));
        let r = crate::common::report(&rep);
        let j = &r["journal"];
        let resumed = j["resumed_chunks"].as_u64().unwrap() as usize;
        assert_eq!(Some(resumed), survived);
        assert_eq!(
            j["appended_chunks"].as_u64().unwrap() as usize,
            total - resumed
        );
        assert!(
            stderr(&o).contains("resumed from the journal"),
            "{}",
            stderr(&o)
        );
    }
    assert!(!journal.exists(), "journal removed after the commit");
    assert_same_raster(&reference, &out);
    // And once more, as a cluster retries a task whose node died after the commit: exit 0,
    // the output left as it is.
    let before = untouched_stamp(&out);
    let o = run(coordinator().args(args(&out)).arg("--resume"));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(untouched_stamp(&out) == before, "the output was rewritten");
    // No temporaries of the killed runs are left once a run has taken the lock.
    let left: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("partial"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

fn small_input(dir: &Path, seed: u64) -> PathBuf {
    let input = dir.join(format!("in{seed}.tif"));
    write_f32(
        &input,
        &RasterSpec {
            width: 1003,
            height: 777,
            tile: Some(64),
            seed,
            ..Default::default()
        },
    );
    input
}

fn resample(input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    run(resample_cmd("2", input, out)
        .args(["-f", "8", "--chunk-mib", "0.05"])
        .args(extra))
}

#[test]
fn an_existing_journal_needs_resume_or_overwrite_and_must_match() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_input(dir.path(), 1);
    let out = dir.path().join("o.tif");
    // A shard's journal stays after its run: the refusals on that path first.
    let o = resample(&input, &out, &["--shard", "0/1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sj = dir.path().join("o.tif.shards/shard-0-of-1.journal");
    assert!(sj.is_file());
    // Rerunning the shard without --resume: refused, naming both ways out.
    let o = resample(&input, &out, &["--shard", "0/1"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("--resume") && e.contains("--overwrite"), "{e}");
    assert_eq!(e.trim().lines().count(), 1, "{e}");
    // Another factor with --resume: refused, naming the option.
    let o = run(resample_cmd("2", &input, &out).args([
        "-f",
        "4",
        "--chunk-mib",
        "0.05",
        "--shard",
        "0/1",
        "--resume",
    ]));
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("--factor is 8, this run's is 4"),
        "{}",
        stderr(&o)
    );
    // The input changed (its modification time): refused.
    let later = std::time::SystemTime::now() + Duration::from_secs(5);
    std::fs::File::options()
        .append(true)
        .open(&input)
        .unwrap()
        .set_modified(later)
        .unwrap();
    let o = resample(&input, &out, &["--shard", "0/1", "--resume"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("input modification time"),
        "{}",
        stderr(&o)
    );
    // --overwrite starts over.
    let o = resample(&input, &out, &["--shard", "0/1", "--overwrite"]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A resume of a complete shard computes nothing.
    let rep = dir.path().join("r.json");
    let o = resample(
        &input,
        &out,
        &[
            "--shard",
            "0/1",
            "--resume",
            "--report",
            rep.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let r = crate::common::report(&rep);
    assert_eq!(r["journal"]["appended_chunks"], 0);
    assert!(r["journal"]["resumed_chunks"].as_u64().unwrap() > 1);

    // A whole run's journal: a run interrupted by SIGTERM keeps its finished chunks.
    let whole = dir.path().join("w.tif");
    let mut child = resample_cmd("1", &input, &whole)
        .args(["-f", "8", "--chunk-mib", "0.05", "--inject-fault", "slow:*"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let wj = dir.path().join("w.tif.journal");
    wait_for(Duration::from_secs(120), "a journaled chunk", || {
        (records(&wj) >= 2).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = child.wait();
    let o = resample(&input, &whole, &[]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(stderr(&o).contains("--resume"), "{}", stderr(&o));
    let o = resample(&input, &whole, &["--resume"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!wj.exists());
    let one = dir.path().join("one.tif");
    let o = resample(&input, &one, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_raster(&one, &whole);
}

#[test]
fn a_torn_or_corrupt_journal_resumes_correctly() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_input(dir.path(), 2);
    let one = dir.path().join("one.tif");
    let o = resample(&input, &one, &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    for damage in ["truncate", "flip"] {
        let out = dir.path().join(format!("{damage}.tif"));
        let o = resample(&input, &out, &["--shard", "0/1"]);
        assert!(o.status.success(), "{}", stderr(&o));
        let j = dir
            .path()
            .join(format!("{damage}.tif.shards/shard-0-of-1.journal"));
        let scan = Scan::read(&j).unwrap().unwrap();
        let n = scan.records.len();
        assert!(n >= 6, "{n} chunks");
        let mid = scan.records[n / 2];
        let mut bytes = std::fs::read(&j).unwrap();
        match damage {
            // Cut in the middle of a record's output.
            "truncate" => bytes.truncate((mid.offset + mid.len / 2) as usize),
            // One bit of a record's output.
            _ => bytes[(mid.offset + 5) as usize] ^= 0x10,
        }
        std::fs::write(&j, &bytes).unwrap();
        let kept: Vec<u64> = Scan::read(&j)
            .unwrap()
            .unwrap()
            .records
            .iter()
            .map(|r| u64::from(r.id))
            .collect();
        assert_eq!(kept.len(), n / 2);
        // Merging now names what is missing.
        let o = run(coordinator().arg("merge").arg(&out));
        assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("shard 0 lacks chunk(s)"),
            "{}",
            stderr(&o)
        );
        let rep = dir.path().join(format!("{damage}.json"));
        let o = resample(
            &input,
            &out,
            &[
                "--shard",
                "0/1",
                "--resume",
                "--report",
                rep.to_str().unwrap(),
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        let r = crate::common::report(&rep);
        assert_eq!(r["journal"]["resumed_chunks"], n / 2);
        // The chunks run are the rest of the plan, each named by its plan id too.
        let ids: Vec<u64> = r["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["plan_id"].as_u64().unwrap_or(c["id"].as_u64().unwrap()))
            .collect();
        let rest: Vec<u64> = (0..n as u64).filter(|i| !kept.contains(i)).collect();
        assert_eq!(ids, rest);
        assert_eq!(
            r["journal"]["appended_chunks"].as_u64().unwrap() as usize,
            n - n / 2
        );
        let o = run(coordinator().arg("merge").arg(&out));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_raster(&one, &out);
        assert!(!dir.path().join(format!("{damage}.tif.shards")).exists());
    }
}

#[test]
fn shards_merge_bit_identical_to_one_node() {
    let dir = tempfile::tempdir().unwrap();
    // Edge blocks on both axes (1003 x 777, F = 8), and a second raster of another shape.
    for seed in [3u64, 4] {
        let input = dir.path().join(format!("in{seed}.tif"));
        let (w, h) = if seed == 3 { (1003, 777) } else { (517, 1299) };
        write_f32(
            &input,
            &RasterSpec {
                width: w,
                height: h,
                tile: if seed == 3 { Some(64) } else { None },
                bands: if seed == 3 { 1 } else { 2 },
                seed,
                ..Default::default()
            },
        );
        let one = dir.path().join(format!("one{seed}.tif"));
        let o = resample(&input, &one, &[]);
        assert!(o.status.success(), "{}", stderr(&o));
        for n in [1u32, 2, 3, 7] {
            let out = dir.path().join(format!("m{seed}-{n}.tif"));
            for i in 0..n {
                let o = resample(&input, &out, &["--shard", &format!("{i}/{n}")]);
                assert!(o.status.success(), "{}", stderr(&o));
            }
            let o = run(coordinator().arg("merge").arg(&out));
            assert!(o.status.success(), "{}", stderr(&o));
            assert_same_raster(&one, &out);
        }
        // The VRT over per-shard GeoTIFFs reads the same pixels and metadata.
        let out = dir.path().join(format!("v{seed}.vrt"));
        for i in 0..3 {
            let o = resample(&input, &out, &["--shard", &format!("{i}/3")]);
            assert!(o.status.success(), "{}", stderr(&o));
        }
        let o = run(coordinator().arg("merge").arg(&out).arg("--vrt"));
        assert!(o.status.success(), "{}", stderr(&o));
        assert_same_raster(&one, &out);
    }
}

#[test]
fn merge_names_missing_shards_and_auto_reads_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_input(dir.path(), 5);
    let out = dir.path().join("o.tif");
    let o = run(coordinator().arg("merge").arg(&out));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    // Shards 0 and 2 of 4 from a "Slurm array" (auto), shard 3 from Kubernetes' index.
    for (id, var) in [
        ("0", "SLURM_ARRAY_TASK_ID"),
        ("2", "SLURM_ARRAY_TASK_ID"),
        ("3", "JOB_COMPLETION_INDEX"),
    ] {
        let o = run(coordinator()
            .env(var, id)
            .env("SLURM_ARRAY_TASK_MIN", "0")
            .env("SLURM_ARRAY_TASK_COUNT", "4")
            .args(["--workers", "2", "resample"])
            .arg(&input)
            .arg(&out)
            .args([
                "-f",
                "8",
                "--chunk-mib",
                "0.05",
                "--shard",
                "auto",
                "--shards",
                "4",
            ]));
        assert!(o.status.success(), "{}", stderr(&o));
        assert!(
            stderr(&o).contains(&format!("wrote shard {id}/4")),
            "{}",
            stderr(&o)
        );
    }
    let o = run(coordinator().arg("merge").arg(&out));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("shard(s) 1 of 4 missing"),
        "{}",
        stderr(&o)
    );
    assert!(!out.exists());
    // No array index anywhere: exit 2, naming the variables.
    let mut cmd = coordinator();
    for v in [
        "SLURM_ARRAY_TASK_ID",
        "JOB_COMPLETION_INDEX",
        "AWS_BATCH_JOB_ARRAY_INDEX",
    ] {
        cmd.env_remove(v);
    }
    let o = run(cmd
        .args(["resample"])
        .arg(&input)
        .arg(&out)
        .args(["-f", "8", "--shard", "auto"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("SLURM_ARRAY_TASK_ID"), "{}", stderr(&o));
    // merge writes a plain GeoTIFF: a shard cannot promise a COG or a pyramid.
    for extra in [&["--pyramid"][..], &["--of", "COG"][..]] {
        let o = run(coordinator()
            .args(["resample"])
            .arg(&input)
            .arg(&out)
            .args(["-f", "8", "--shard", "0/4"])
            .args(extra));
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {}", stderr(&o));
        assert!(
            stderr(&o).contains("not available with --shard"),
            "{}",
            stderr(&o)
        );
    }
}

/// The file's bytes and modification time: "left untouched" means both.
fn untouched_stamp(path: &Path) -> (Vec<u8>, std::time::SystemTime) {
    let bytes = std::fs::read(path).unwrap();
    let mtime = std::fs::metadata(path).unwrap().modified().unwrap();
    (bytes, mtime)
}

#[test]
fn resume_over_a_committed_output_of_the_same_plan_exits_0_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_input(dir.path(), 11);
    let out = dir.path().join("o.tif");
    let rep = dir.path().join("o.json");
    let o = resample(&input, &out, &["--report", rep.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before = untouched_stamp(&out);
    let report_before = std::fs::read(&rep).unwrap();
    // The retry of a run that committed (a Slurm requeue, a Kubernetes retry): exit 0,
    // nothing rewritten, the report of the run that made the output kept.
    let o = resample(
        &input,
        &out,
        &["--resume", "--report", rep.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("kept"), "{}", stderr(&o));
    assert!(untouched_stamp(&out) == before, "the output was rewritten");
    assert_eq!(std::fs::read(&rep).unwrap(), report_before);
    assert!(!dir.path().join("o.tif.journal").exists());
    // Other options (or another input) over that output: refused as any existing output.
    for extra in [
        &["--resume", "--agg", "mean"][..],
        &["--resume", "--ignore-mask", "--ot", "Float32"],
    ] {
        let o = resample(&input, &out, extra);
        assert_eq!(o.status.code(), Some(4), "{extra:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
        assert!(untouched_stamp(&out) == before);
    }
    let other = small_input(dir.path(), 12);
    let o = resample(&other, &out, &["--resume"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(untouched_stamp(&out) == before);
    // Killed between the commit and the journal's removal: the journal (complete) is still
    // there beside the committed output. --resume keeps the output and removes the journal.
    let journal = dir.path().join("o.tif.journal");
    let o = resample(&input, &dir.path().join("p.tif"), &["--shard", "0/1"]);
    assert!(o.status.success(), "{}", stderr(&o));
    std::fs::copy(
        dir.path().join("p.tif.shards/shard-0-of-1.journal"),
        &journal,
    )
    .unwrap();
    let o = resample(&input, &out, &["--resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(untouched_stamp(&out) == before, "the output was rewritten");
    assert!(!journal.exists(), "the committed run's journal is removed");
}

/// A retry lands on a node with another CPU count: on a small raster the chunk grid follows
/// the workers that run at once (no more than the CPUs), so the journal's grid is not the
/// one the retry plans. `--resume` takes the journal's grid, keeps its chunks, and the output
/// is the uninterrupted run's.
#[test]
fn resume_on_a_node_with_other_cpus_keeps_the_journals_chunk_grid() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let taskset = std::process::Command::new("taskset")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if cpus < 2 || !taskset {
        crate::common::cannot_check("needs 2 CPUs and taskset to plan on 1 CPU, then on 2");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    // 16 MiB of Float32: four chunks each for 1 running worker, 2 MiB chunks for 2.
    write_f32(
        &input,
        &RasterSpec {
            width: 2048,
            height: 2048,
            tile: Some(256),
            seed: 7,
            ..Default::default()
        },
    );
    let out = dir.path().join("o.tif");
    let journal = dir.path().join("o.tif.journal");
    let on_cpus = |list: &str| {
        let mut c = std::process::Command::new("taskset");
        c.args(["-c", list]).arg(crate::common::bin("coordinator"));
        c.args(["--workers", "2", "resample"]).arg(&input).arg(&out);
        c.args(["-f", "8", "-v"]);
        c
    };
    let mut first = on_cpus("0")
        .args(["--inject-fault", "slow:*"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(Duration::from_secs(120), "a journaled chunk", || {
        (records(&journal) >= 1).then_some(())
    });
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(first.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let _ = first.wait();
    let journaled = Scan::read(&journal).unwrap().unwrap();
    let theirs = journaled.header.identity.chunks;
    let rep = dir.path().join("r.json");
    let o = run(on_cpus("0,1").arg("--resume").arg("--report").arg(&rep));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("the journal's chunk grid"),
        "{}",
        stderr(&o)
    );
    let r = crate::common::report(&rep);
    assert_eq!(r["plan"]["chunks"].as_u64(), Some(u64::from(theirs)));
    let resumed = r["journal"]["resumed_chunks"].as_u64().unwrap();
    assert!(resumed >= 1, "nothing resumed: {r}");
    assert_eq!(
        resumed + r["journal"]["appended_chunks"].as_u64().unwrap(),
        u64::from(theirs)
    );
    // The plan of 2 running workers is another grid: the adoption is what kept the journal.
    let fresh = dir.path().join("fresh.tif");
    let frep = dir.path().join("f.json");
    let o = run(resample_cmd("2", &input, &fresh)
        .args(["-f", "8", "--report"])
        .arg(&frep));
    assert!(o.status.success(), "{}", stderr(&o));
    let f = crate::common::report(&frep);
    assert_ne!(f["plan"]["chunks"], r["plan"]["chunks"], "{f}");
    assert_same_raster(&fresh, &out);
}

/// A requeued job runs the same command line, side files included. After SIGTERM (what
/// Slurm sends a preempted job) the interrupted run's report, page and event stream are
/// there; `--resume` replaces them, whether the run had journaled chunks or stopped before
/// its first (and so left no journal), and a retry after the commit leaves them as they are.
/// A file that is not one of those is refused as without `--resume`.
#[test]
fn resume_replaces_the_interrupted_runs_report_page_and_events() {
    let dir = tempfile::tempdir().unwrap();
    let input = small_input(dir.path(), 5);
    let out = dir.path().join("o.tif");
    let journal = dir.path().join("o.tif.journal");
    let (rep, page, events) = (
        dir.path().join("r.json"),
        dir.path().join("r.html"),
        dir.path().join("ev.jsonl"),
    );
    let cmd = |extra: &[&str]| {
        let mut c = resample_cmd("1", &input, &out);
        c.args(["-f", "8", "--chunk-mib", "0.05"]);
        c.arg("--report").arg(&rep).arg("--report-html").arg(&page);
        c.arg("--events").arg(&events).args(extra);
        c
    };
    // A file that is not a side file of a run on this output is never replaced unasked.
    for p in [&rep, &page, &events] {
        std::fs::write(
            p,
            "{\"tool\": \"blocksum coordinator\", \"output\": \"other.tif\"}\n",
        )
        .unwrap();
        let o = run(&mut cmd(&["--resume"]));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stderr(&o).contains("exists"), "{}", stderr(&o));
        assert!(std::fs::read_to_string(p).unwrap().contains("other.tif"));
        std::fs::remove_file(p).unwrap();
    }
    for journaled in [false, true] {
        for p in [&out, &rep, &page, &events] {
            let _ = std::fs::remove_file(p);
        }
        let mut child = cmd(&["--inject-fault", "slow:*"])
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(Duration::from_secs(120), "the run under way", || {
            let started = std::fs::read_to_string(&events).is_ok_and(|t| t.contains("dispatch"));
            let far = !journaled || records(&journal) >= 1;
            (started && far).then_some(())
        });
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        assert_eq!(child.wait().unwrap().code(), Some(130));
        let r = crate::common::report(&rep);
        assert_eq!(r["status"], "failed", "{r}");
        assert_eq!(journal.exists(), journaled);
        if journaled {
            // A resume of other options is refused: the interrupted run's files stay.
            let before = [&rep, &page, &events].map(|p| std::fs::read(p).unwrap());
            let o = run(&mut cmd(&["--resume", "--ignore-mask"]));
            assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
            assert_eq!(
                [&rep, &page, &events].map(|p| std::fs::read(p).unwrap()),
                before
            );
        }
        let o = run(&mut cmd(&["--resume"]));
        assert!(o.status.success(), "journaled {journaled}: {}", stderr(&o));
        let r = crate::common::report(&rep);
        assert_eq!(r["status"], "ok", "{r}");
        assert_eq!(
            r["journal"]["resumed_chunks"].as_u64().unwrap() > 0,
            journaled
        );
        let last = std::fs::read_to_string(&events).unwrap();
        assert!(
            last.lines().last().unwrap().contains("\"status\":\"ok\""),
            "{last}"
        );
        assert!(std::fs::read_to_string(&page).unwrap().contains("o.tif"));
    }
    // The retry after the commit: nothing computed, the side files left as they are.
    let before = [&rep, &page, &events].map(|p| std::fs::read(p).unwrap());
    let o = run(&mut cmd(&["--resume"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        [&rep, &page, &events].map(|p| std::fs::read(p).unwrap()),
        before
    );
    let one = dir.path().join("one.tif");
    let o = run(resample_cmd("2", &input, &one).args(["-f", "8"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_same_raster(&one, &out);
}
