//! The deploy manifests (not run here): the Kubernetes Jobs parse as YAML and the AWS Batch job
//! definitions as JSON, with the shape each engine needs, and the command lines they give the
//! coordinator parse with its own command-line schema (N agreeing with the array's size).

use std::path::{Path, PathBuf};

use clap::Parser;
use coordinator::cli::{Cli, Command};

fn deploy(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .join("deploy")
        .join(rel)
}

fn yaml(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(deploy(rel)).unwrap();
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn json(rel: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(deploy(rel)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap_or_else(|| panic!("not a list: {v}"))
        .iter()
        .map(|s| s.as_str().expect("a string").to_string())
        .collect()
}

/// Parses `command + args` as the coordinator would.
fn parse(argv: &[String]) -> Cli {
    assert_eq!(argv[0], "coordinator", "{argv:?}");
    Cli::try_parse_from(argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"))
}

fn shards_of(cli: &Cli) -> (Option<u32>, bool) {
    match &cli.command {
        Command::Resample(r) => (r.run.shards, r.run.resume),
        other => panic!("not resample: {other:?}"),
    }
}

#[test]
fn the_kubernetes_jobs_are_an_indexed_job_and_a_merge() {
    let j = yaml("k8s/shards-job.yaml");
    assert_eq!(j["apiVersion"], "batch/v1");
    assert_eq!(j["kind"], "Job");
    let spec = &j["spec"];
    assert_eq!(spec["completionMode"], "Indexed");
    let c = &spec["template"]["spec"]["containers"][0];
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    let (shards, resume) = shards_of(&parse(&argv));
    assert_eq!(shards.map(u64::from), spec["completions"].as_u64());
    assert!(resume, "a retried pod must resume");
    assert!(argv.windows(2).any(|w| w == ["--shard", "auto"]));
    // The pods share the volume the merge reads.
    let claim = &j["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"];

    let m = yaml("k8s/merge-job.yaml");
    assert_eq!(m["kind"], "Job");
    let c = &m["spec"]["template"]["spec"]["containers"][0];
    let mut argv = strings(&c["command"]);
    argv.extend(strings(&c["args"]));
    assert!(matches!(parse(&argv).command, Command::Merge(_)));
    assert_eq!(
        &m["spec"]["template"]["spec"]["volumes"][0]["persistentVolumeClaim"]["claimName"],
        claim
    );
}

#[test]
fn the_aws_batch_job_definitions_run_shards_and_a_merge() {
    let d = json("aws-batch/job-definition.json");
    assert_eq!(d["type"], "container");
    let params = d["parameters"].as_object().unwrap();
    // Batch substitutes Ref::NAME from the parameters.
    let argv: Vec<String> = strings(&d["containerProperties"]["command"])
        .into_iter()
        .map(|a| match a.strip_prefix("Ref::") {
            Some(k) => params[k]
                .as_str()
                .unwrap_or_else(|| panic!("no parameter {k}"))
                .to_string(),
            None => a,
        })
        .collect();
    let (shards, resume) = shards_of(&parse(&argv));
    assert_eq!(
        shards.map(|n| n.to_string()).as_deref(),
        params["shards"].as_str()
    );
    assert!(resume);
    assert!(d["retryStrategy"]["attempts"].as_u64().unwrap() > 1);

    let m = json("aws-batch/merge-job-definition.json");
    let p = m["parameters"].as_object().unwrap();
    let argv: Vec<String> = strings(&m["containerProperties"]["command"])
        .into_iter()
        .map(|a| match a.strip_prefix("Ref::") {
            Some(k) => p[k].as_str().unwrap().to_string(),
            None => a,
        })
        .collect();
    assert!(matches!(parse(&argv).command, Command::Merge(_)));
    assert_eq!(p["output"], params["output"]);
}
