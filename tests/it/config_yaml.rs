//! `--config` with the application's whole `config.yml` (issue 19): the seed's YAML section
//! drives a real run, `coordinator config` names the file and its format for each value it
//! gave, the environment and flags still win, and a typo is refused naming key and file.

use crate::common::*;

/// The seed pipeline's section, verbatim, inside a larger application config.
const APP_YAML: &str = "\
app:
  name: data-prep
other_stage:
  enabled: true
resampling:
  method: sum
  multiprocessing:
    enabled: true
    max_workers: 50
    chunk_prefetch: 4
    memory_limit_per_worker: 512  # MB
    queue_sizes:
      chunk_queue: 100
      result_queue: 50
";

fn line<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in:\n{text}"))
}

#[test]
fn coordinator_config_shows_yaml_sources() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, APP_YAML).unwrap();
    let o = run(coordinator()
        .arg("--config")
        .arg(&cfg)
        .env("BLOCKSUM_CHUNK_PREFETCH", "6")
        .args(["config", "--max-attempts", "4"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        line(&text, "config file:").contains("config.yml (YAML)"),
        "{text}"
    );
    let from_file = format!("(file {})", cfg.display());
    for key in [
        "workers",
        "memory_limit_per_worker",
        "queue_sizes.chunk_queue",
        "queue_sizes.result_queue",
    ] {
        assert!(line(&text, key).ends_with(&from_file), "{key}: {text}");
    }
    assert!(line(&text, "workers").contains(" 50 "), "{text}");
    assert!(line(&text, "memory_limit_per_worker").contains("512 MiB"));
    assert!(line(&text, "chunk_prefetch").contains("(env BLOCKSUM_CHUNK_PREFETCH)"));
    assert!(line(&text, "max_attempts").contains("(flag)"));
    assert!(line(&text, "task_timeout ").contains("(default)"));
}

#[test]
fn a_yaml_config_drives_a_run_and_a_typo_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.tif");
    let spec = RasterSpec {
        width: 300,
        height: 200,
        ..RasterSpec::default()
    };
    let data = write_f32(&input, &spec);
    // enabled: false runs in process, whatever max_workers says.
    let cfg = dir.path().join("config.yaml");
    std::fs::write(
        &cfg,
        APP_YAML.replace("enabled: true\n    max", "enabled: false\n    max"),
    )
    .unwrap();
    let out = dir.path().join("out.tif");
    let rep = dir.path().join("run.json");
    let o = run(coordinator()
        .arg("--config")
        .arg(&cfg)
        .arg("resample")
        .arg(&input)
        .arg(&out)
        .args(["-f", "4", "--report"])
        .arg(&rep));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let r = report(&rep);
    assert_eq!(r["options"]["workers"], 0, "{r}");
    let (_, got) = read_all(&out);
    let want = reference_sum(&data[0], 300, 200, 4, spec.nodata);
    assert!(same_pixels(&got[0], &want));

    std::fs::write(&cfg, APP_YAML.replace("chunk_prefetch", "chunk_prefech")).unwrap();
    let o = run(coordinator()
        .arg("--config")
        .arg(&cfg)
        .arg("resample")
        .arg(&input)
        .arg(dir.path().join("o2.tif"))
        .args(["-f", "4"]));
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("resampling.multiprocessing.chunk_prefech") && err.contains("config.yaml"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
}

/// The first fenced block of `lang` in the README.
fn readme_block(lang: &str) -> String {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let fence = format!("```{lang}\n");
    let start = md.find(&fence).unwrap_or_else(|| panic!("no {lang} block")) + fence.len();
    let len = md[start..].find("```").unwrap();
    md[start..start + len].to_string()
}

#[test]
fn the_readme_yaml_and_toml_blocks_resolve_alike() {
    let dir = tempfile::tempdir().unwrap();
    let show = |name: &str, text: String| {
        let cfg = dir.path().join(name);
        std::fs::write(&cfg, text).unwrap();
        let o = run(coordinator().arg("--config").arg(&cfg).arg("config"));
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(text.contains("(file "), "{text}");
        // Only the file's name and format may differ.
        text.replace(&cfg.display().to_string(), "FILE")
            .replace("(TOML)", "(FORMAT)")
            .replace("(YAML)", "(FORMAT)")
    };
    let yaml = show("blocksum.yml", readme_block("yaml"));
    let toml = show("blocksum.toml", readme_block("toml"));
    assert_eq!(yaml, toml);
}
