//! The layered settings: one table with one row per setting (flag, environment variable,
//! config-file key, default, parser, and how a value is shown), layered as
//! defaults < config file < environment < flags. Every value is parsed into its type once,
//! where it is read: clap parses flags and variables with the row's parser, and loading the
//! file parses each key with the same parser. `coordinator config` prints the same table.
//! Turning the settings into the run's config is [`super::resolve`](mod@super::resolve)'s job.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
    time::Duration,
};

use clap::{parser::ValueSource, Arg, ArgMatches};

use super::config_file::{self, FileValue, Format, SECTION};
use super::values::*;
pub use super::values::{whole, Speculate, Workers};
use crate::{
    error::CoordError,
    sched::{
        TimeoutSpec, DEFAULT_SPECULATION_FACTOR, DEFAULT_SPECULATION_FLOOR, DEFAULT_START_TIMEOUT,
        DEFAULT_TIMEOUT_FLOOR,
    },
    units,
};

/// The default `--task-timeout`: ten times the median chunk time, never below the floor
/// (`--task-timeout-floor`, 10 s). A stopped or hung worker cannot stall the run, and a
/// slow but healthy chunk is far from the limit.
pub const DEFAULT_TASK_TIMEOUT: TimeoutSpec = TimeoutSpec::PercentOfMedian(1000.0);

/// The default `--kill-grace` (a `resample` flag, not layered).
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_millis(500);

/// Threads (or worker processes) when nothing says how many: every CPU. The coordinator
/// mostly sleeps (dispatch and writing are a small share of a run), so the seed's CPUs - 1
/// left a core idle: measured here, 2 workers finish the 8192² demo in 0.78 s, 1 in 1.2 s.
pub fn default_threads() -> u32 {
    cpus().max(1)
}

pub fn cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Layers defaults < config file < environment < flags.
pub fn settings(config_file: Option<&Path>, given: &PoolArgs) -> Result<Settings, CoordError> {
    let (format, file) = match config_file {
        Some(p) => {
            let (format, values) = load(p)?;
            (Some(format), values)
        }
        None => (None, FileValues::default()),
    };
    let mut s = Settings::layer(config_file, file, given);
    s.config_format = format;
    // `enabled = false` runs in process, over the file's `max_workers`; the environment and
    // flags still win, as for any file value.
    if !s.enabled.value && matches!(s.workers.source, Source::Default | Source::File(_)) {
        s.workers = Setting {
            value: Workers::N(0),
            source: s.enabled.source.clone(),
        };
    }
    Ok(s)
}

impl Settings {
    /// The text `coordinator config` prints.
    pub fn describe(&self) -> String {
        let mut out = match (&self.config_file, self.config_format) {
            (Some(p), Some(f)) => format!("config file: {} ({f})\n", p.display()),
            (Some(p), None) => format!("config file: {}\n", p.display()),
            (None, _) => "config file: none\n".to_string(),
        };
        for (k, v, s) in self.rows() {
            out.push_str(&format!("{k:<26} {v:<50} ({s})\n"));
        }
        out
    }
}

/// Reads the config file (TOML or YAML: [`super::config_file`]) and parses every key of its
/// `resampling.multiprocessing` section into its type; an unknown key there is an error
/// naming it and the file.
fn load(path: &Path) -> Result<(Format, FileValues), CoordError> {
    let bad =
        |why: String| CoordError::BadInput(format!("config file '{}': {why}", path.display()));
    let mut section = config_file::read(path, FILE_KEYS).map_err(bad)?;
    let table = SECTION.join(".");
    let values = FileValues::take(&mut section.keys)
        .map_err(|(key, why)| bad(format!("{table}.{key}: {why}")))?;
    match section.keys.keys().next() {
        Some(k) => Err(bad(format!("unknown key '{table}.{k}'"))),
        None => Ok((section.format, values)),
    }
}

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(&'static str),
    Flag,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(v) => write!(f, "env {v}"),
            Source::Flag => f.write_str("flag"),
        }
    }
}

/// A value and its source.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting<T> {
    pub value: T,
    pub source: Source,
}

/// How a value is written in the config file (TOML or YAML alike).
#[derive(Debug, Clone, Copy)]
pub enum Toml {
    Int,
    Float,
    Str,
    /// A bare number (MiB for sizes) or a string with a unit.
    IntOrStr,
    /// A number, or a string (a word such as `off`).
    FloatOrStr,
    Bool,
}

impl Toml {
    /// The value as text for the row's parser, or why its type is wrong.
    fn text(self, v: &FileValue) -> Result<String, String> {
        use FileValue as V;
        match (self, v) {
            (Toml::Int | Toml::Float | Toml::IntOrStr | Toml::FloatOrStr, V::Int(i)) => {
                Ok(i.to_string())
            }
            (Toml::Float | Toml::FloatOrStr, V::Float(f)) => Ok(f.to_string()),
            (Toml::Str | Toml::IntOrStr | Toml::FloatOrStr, V::Str(s)) => Ok(s.clone()),
            (Toml::Bool, V::Bool(b)) => Ok(b.to_string()),
            (_, v) => Err(format!(
                "expected {}, found {}",
                match self {
                    Toml::Int => "a whole number",
                    Toml::Float => "a number",
                    Toml::Str => "a string",
                    Toml::IntOrStr => "a number of MiB or a string with a unit",
                    Toml::FloatOrStr => "a number or a string",
                    Toml::Bool => "true or false",
                },
                v.type_str()
            )),
        }
    }
}

/// One setting: where it is read from, its default, how it is parsed and shown.
pub struct Row<T: 'static> {
    /// The long flag without `--`, also clap's id; `None`: the file only.
    pub flag: Option<&'static str>,
    pub env: Option<&'static str>,
    /// The key under `[resampling.multiprocessing]`, dotted for a nested table.
    pub key: &'static str,
    pub toml: Toml,
    pub default: T,
    /// Parses a flag's, a variable's or the file's text.
    pub parse: fn(&str) -> Result<T, String>,
    pub show: fn(&T) -> String,
    /// The value's placeholder in `--help`.
    pub meta: &'static str,
    /// Declared on the top-level command rather than with [`PoolArgs`].
    pub global: bool,
    pub help: &'static str,
}

impl<T: Clone + Send + Sync + 'static> Row<T> {
    /// `--help`'s text: the row's, and its default.
    pub fn help_text(&self) -> String {
        format!("{} [default: {}]", self.help, (self.show)(&self.default))
    }

    /// How a message names where a value came from: the flag, the variable, or the file
    /// and its key.
    pub fn source_name(&self, source: &Source) -> String {
        match source {
            Source::Env(v) => v.to_string(),
            Source::File(p) => format!("{} in '{}'", self.key, p.display()),
            Source::Flag | Source::Default => match self.flag {
                Some(f) => format!("--{f}"),
                None => self.key.to_string(),
            },
        }
    }

    fn arg(&self) -> Option<Arg> {
        let flag = self.flag.filter(|_| !self.global)?;
        Some(
            Arg::new(flag)
                .long(flag)
                .env(self.env)
                .value_parser(self.parse)
                .allow_hyphen_values(true)
                .value_name(self.meta)
                .help(self.help_text()),
        )
    }

    fn given(&self, m: &ArgMatches) -> Option<Setting<T>> {
        let id = self.flag?;
        let value = m.try_get_one::<T>(id).ok().flatten()?.clone();
        let source = match (m.value_source(id), self.env) {
            (Some(ValueSource::EnvVariable), Some(env)) => Source::Env(env),
            _ => Source::Flag,
        };
        Some(Setting { value, source })
    }

    fn take_from_file(&self, keys: &mut BTreeMap<String, FileValue>) -> Result<Option<T>, String> {
        keys.remove(self.key)
            .map(|v| self.toml.text(&v).and_then(|t| (self.parse)(&t)))
            .transpose()
    }

    fn layer(&self, file: Option<T>, file_src: &Source, given: &Option<Setting<T>>) -> Setting<T> {
        match (given, file) {
            (Some(g), _) => g.clone(),
            (None, Some(value)) => Setting {
                value,
                source: file_src.clone(),
            },
            (None, None) => Setting {
                value: self.default.clone(),
                source: Source::Default,
            },
        }
    }

    fn label(&self, name: &'static str) -> &'static str {
        if self.key.contains('.') {
            self.key
        } else {
            name
        }
    }
}

/// Builds, from the rows: the row constants, [`Settings`] (every value with its source),
/// [`PoolArgs`] (the flags and variables as clap found them), the file's parsed values and
/// the list `coordinator config` prints. Adding a setting is adding a row.
macro_rules! table {
    ($( $ROW:ident => $name:ident: $ty:ty = $row:expr; )*) => {
        $( pub const $ROW: Row<$ty> = $row; )*

        const FILE_KEYS: &[&str] = &[$( $ROW.key, )*];

        /// Every layered setting, resolved, with where its value came from.
        #[derive(Debug, Clone)]
        pub struct Settings {
            pub config_file: Option<PathBuf>,
            /// How the config file was read.
            pub config_format: Option<Format>,
            $( pub $name: Setting<$ty>, )*
        }

        /// The layered options as clap found them, from a flag or its variable.
        #[derive(Debug, Clone, Default)]
        pub struct PoolArgs {
            $( pub $name: Option<Setting<$ty>>, )*
        }

        impl clap::FromArgMatches for PoolArgs {
            fn from_arg_matches(m: &ArgMatches) -> Result<Self, clap::Error> {
                Ok(PoolArgs { $( $name: $ROW.given(m), )* })
            }

            fn update_from_arg_matches(&mut self, m: &ArgMatches) -> Result<(), clap::Error> {
                *self = Self::from_arg_matches(m)?;
                Ok(())
            }
        }

        impl clap::Args for PoolArgs {
            fn augment_args(cmd: clap::Command) -> clap::Command {
                cmd $( .args($ROW.arg()) )*
            }

            fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
                Self::augment_args(cmd)
            }
        }

        /// The config file's values, each parsed into its type when the file is loaded.
        #[derive(Debug, Clone, Default)]
        struct FileValues {
            $( $name: Option<$ty>, )*
        }

        impl FileValues {
            /// Takes every row's key out of `keys`; what is left is unknown.
            fn take(keys: &mut BTreeMap<String, FileValue>) -> Result<Self, (&'static str, String)> {
                Ok(FileValues {
                    $( $name: $ROW.take_from_file(keys).map_err(|e| ($ROW.key, e))?, )*
                })
            }
        }

        impl Settings {
            fn layer(config_file: Option<&Path>, file: FileValues, given: &PoolArgs) -> Settings {
                let file_src = Source::File(config_file.map(Path::to_path_buf).unwrap_or_default());
                Settings {
                    config_file: config_file.map(Path::to_path_buf),
                    config_format: None,
                    $( $name: $ROW.layer(file.$name, &file_src, &given.$name), )*
                }
            }

            /// Name, shown value and source of every setting, in table order.
            pub fn rows(&self) -> Vec<(&'static str, String, &Source)> {
                vec![$( ($ROW.label(stringify!($name)), ($ROW.show)(&self.$name.value), &self.$name.source), )*]
            }
        }
    };
}
// One row per setting. `flag` is also clap's id; `global` rows are declared on the top-level
// command (see `schema::Cli`), the others come with `PoolArgs`. The name `coordinator config`
// prints is the field's, or the file key when that is nested.
table! {
    WORKERS => workers: Workers = Row {
        flag: Some("workers"), env: Some("BLOCKSUM_WORKERS"), key: "max_workers", toml: Toml::Int,
        default: Workers::Auto, parse: parse_workers, show: plain, meta: "N|auto", global: true,
        help: "Worker processes: a number, or `auto` (every CPU, fewer if memory says so). 0 runs in process",
    };
    ENABLED => enabled: bool = Row {
        flag: None, env: None, key: "enabled", toml: Toml::Bool,
        default: true, parse: parse_bool, show: plain, meta: "", global: false,
        help: "`false`: run in process (the file's `max_workers` is then ignored)",
    };
    MAX_ATTEMPTS => max_attempts: u32 = Row {
        flag: Some("max-attempts"), env: Some("BLOCKSUM_MAX_ATTEMPTS"), key: "max_attempts", toml: Toml::Int,
        default: 3, parse: parse_attempts, show: plain, meta: "N", global: false,
        help: "Attempts per chunk before it is quarantined",
    };
    TASK_TIMEOUT => task_timeout: Option<TimeoutSpec> = Row {
        flag: Some("task-timeout"), env: Some("BLOCKSUM_TASK_TIMEOUT"), key: "task_timeout", toml: Toml::Str,
        default: Some(DEFAULT_TASK_TIMEOUT), parse: units::parse_timeout_arg, show: show_timeout, meta: "TIMEOUT", global: false,
        help: "Time limit per attempt: 500ms, 30s, 2m; a percentage of the median chunk time (500%), never below --task-timeout-floor; or none",
    };
    TASK_TIMEOUT_FLOOR => task_timeout_floor: Duration = Row {
        flag: Some("task-timeout-floor"), env: Some("BLOCKSUM_TASK_TIMEOUT_FLOOR"), key: "task_timeout_floor", toml: Toml::Str,
        default: DEFAULT_TIMEOUT_FLOOR, parse: units::parse_duration, show: show_duration, meta: "DURATION", global: false,
        help: "The least limit a percentage --task-timeout gives; also the limit until a chunk has finished, when it is above 60s",
    };
    SPECULATION => speculation: Speculate = Row {
        flag: Some("speculation"), env: Some("BLOCKSUM_SPECULATION"), key: "speculation", toml: Toml::FloatOrStr,
        default: Speculate::Factor(DEFAULT_SPECULATION_FACTOR), parse: parse_speculation, show: plain, meta: "K|off", global: false,
        help: "Speculative backups: with a worker idle and nothing queued, a chunk running longer than K x the median chunk time (and --speculation-floor) gets a second attempt; the first to finish is kept. off: never",
    };
    SPECULATION_FLOOR => speculation_floor: Duration = Row {
        flag: Some("speculation-floor"), env: Some("BLOCKSUM_SPECULATION_FLOOR"), key: "speculation_floor", toml: Toml::Str,
        default: DEFAULT_SPECULATION_FLOOR, parse: units::parse_duration, show: show_duration, meta: "DURATION", global: false,
        help: "The least time a chunk runs before a speculative backup of it starts (also the wait before any chunk has finished)",
    };
    START_TIMEOUT => start_timeout: Duration = Row {
        flag: Some("start-timeout"), env: Some("BLOCKSUM_START_TIMEOUT"), key: "start_timeout", toml: Toml::Str,
        default: DEFAULT_START_TIMEOUT, parse: units::parse_duration, show: show_duration, meta: "DURATION", global: false,
        help: "How long a new worker may take to say hello before it is killed (and counts toward the restart breaker)",
    };
    MEMORY_LIMIT => memory_limit_per_worker: Option<u64> = Row {
        flag: Some("memory-limit-per-worker"), env: Some("BLOCKSUM_MEMORY_LIMIT_PER_WORKER"), key: "memory_limit_per_worker", toml: Toml::IntOrStr,
        default: None, parse: parse_some_size, show: show_memory_limit, meta: "SIZE", global: false,
        help: "Hard memory limit per worker, enforced by the kernel (RLIMIT_DATA): 512MiB, 2GiB, or a bare number of MiB",
    };
    SOFT_FRACTION => memory_soft_fraction: f64 = Row {
        flag: Some("soft-fraction"), env: Some("BLOCKSUM_SOFT_FRACTION"), key: "memory_soft_fraction", toml: Toml::Float,
        default: 0.8, parse: parse_fraction, show: plain, meta: "FRACTION", global: false,
        help: "Fraction of the limit of private memory (RssAnon) above which a worker is recycled after its chunk",
    };
    MEMORY_POLL => memory_poll: Duration = Row {
        flag: Some("memory-poll"), env: Some("BLOCKSUM_MEMORY_POLL"), key: "memory_poll", toml: Toml::Str,
        default: Duration::from_millis(100), parse: units::parse_duration, show: show_duration, meta: "DURATION", global: false,
        help: "How often worker memory and free memory are sampled",
    };
    MIN_FREE_MEMORY => min_free_memory: Option<u64> = Row {
        flag: Some("min-free-memory"), env: Some("BLOCKSUM_MIN_FREE_MEMORY"), key: "min_free_memory", toml: Toml::IntOrStr,
        default: None, parse: parse_some_size, show: show_size_or_none, meta: "SIZE", global: false,
        help: "Do not dispatch a chunk while the machine has less available memory than this: the run waits (like GNU parallel's --memfree)",
    };
    CHUNK_PREFETCH => chunk_prefetch: u32 = Row {
        flag: Some("chunk-prefetch"), env: Some("BLOCKSUM_CHUNK_PREFETCH"), key: "chunk_prefetch", toml: Toml::Int,
        default: 2, parse: parse_count, show: plain, meta: "N", global: false,
        help: "Slots beyond one per worker: finished chunks waiting for the writer",
    };
    SPARE_WORKERS => spare_workers: u32 = Row {
        flag: Some("spare-workers"), env: Some("BLOCKSUM_SPARE_WORKERS"), key: "spare_workers", toml: Toml::Int,
        default: 1, parse: parse_count, show: plain, meta: "N", global: false,
        help: "Warm spare worker processes, started and idle, that take over a crashed worker's chunk at once while it restarts",
    };
    CHUNK_QUEUE => chunk_queue: Option<u32> = Row {
        flag: None, env: None, key: "queue_sizes.chunk_queue", toml: Toml::Int,
        default: None, parse: parse_some_queue, show: show_chunk_queue, meta: "", global: false,
        help: "The seed's queue size: caps the slot ring",
    };
    RESULT_QUEUE => result_queue: Option<u32> = Row {
        flag: None, env: None, key: "queue_sizes.result_queue", toml: Toml::Int,
        default: None, parse: parse_some_queue, show: show_result_queue, meta: "", global: false,
        help: "The seed's queue size: accepted; the slot ring already bounds finished chunks",
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Result<Settings, CoordError> {
        file_named("c.toml", text)
    }

    fn file_named(name: &str, text: &str) -> Result<Settings, CoordError> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        settings(Some(&p), &PoolArgs::default())
    }

    /// The seed pipeline's `config.yml` section, verbatim (issue 19).
    const SEED_YAML: &str = "\
resampling:
  multiprocessing:
    enabled: true
    max_workers: 50
    chunk_prefetch: 4
    memory_limit_per_worker: 512  # MB
    queue_sizes:
      chunk_queue: 100
      result_queue: 50
";

    /// Every value and its source's kind, without the file's path (TOML and YAML files differ
    /// only there).
    fn resolved(s: &Settings) -> Vec<(&'static str, String, String)> {
        s.rows()
            .into_iter()
            .map(|(k, v, src)| {
                let kind = match src {
                    Source::File(_) => "file".to_string(),
                    other => other.to_string(),
                };
                (k, v, kind)
            })
            .collect()
    }

    fn assert_seed_values(s: &Settings) {
        assert_eq!(s.workers.value, Workers::N(50));
        assert!(matches!(s.workers.source, Source::File(_)));
        assert!(s.enabled.value);
        assert_eq!(s.chunk_prefetch.value, 4);
        assert_eq!(s.memory_limit_per_worker.value, Some(512 << 20));
        assert_eq!(s.chunk_queue.value, Some(100));
        assert_eq!(s.result_queue.value, Some(50));
        assert_eq!(s.max_attempts.source, Source::Default);
    }

    #[test]
    fn the_seed_yaml_reads_verbatim() {
        let s = file_named("config.yml", SEED_YAML).unwrap();
        assert_seed_values(&s);
        assert_eq!(s.config_format, Some(Format::Yaml));
        assert!(s.describe().contains("(YAML)"), "{}", s.describe());
        assert!(s.describe().contains("file "), "{}", s.describe());
        // Content decides where the name does not.
        let s = file_named("pipeline-config", SEED_YAML).unwrap();
        assert_eq!(s.config_format, Some(Format::Yaml));
        let off = file_named(
            "c.yaml",
            "resampling:\n  multiprocessing:\n    enabled: false\n    max_workers: 8\n",
        )
        .unwrap();
        assert_eq!(off.workers.value, Workers::N(0));
    }

    #[test]
    fn an_empty_yaml_section_is_an_empty_table_as_in_toml() {
        let defaults = resolved(&file("[resampling.multiprocessing]\n").unwrap());
        // Each level the tool reads, written with nothing (or only comments) under it: YAML
        // reads a null there, TOML an empty table; both are an empty section.
        for (yaml, toml) in [
            (
                "resampling:\n  multiprocessing:\n    # max_workers: 2\n",
                "[resampling.multiprocessing]\n# max_workers = 2\n",
            ),
            (
                "resampling:\n  multiprocessing: ~\n",
                "[resampling]\nmultiprocessing = {}\n",
            ),
            (
                "resampling:\n  multiprocessing:\n    queue_sizes:\n",
                "[resampling.multiprocessing.queue_sizes]\n",
            ),
            (
                "resampling:\n  multiprocessing:\n    queue_sizes:\n      # chunk_queue: 100\n",
                "[resampling.multiprocessing]\nqueue_sizes = {}\n",
            ),
        ] {
            let y = file_named("c.yml", yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"));
            let t = file_named("c.toml", toml).unwrap_or_else(|e| panic!("{toml}: {e}"));
            assert_eq!(resolved(&y), defaults, "{yaml}");
            assert_eq!(resolved(&t), defaults, "{toml}");
        }
        // Beside keys that are set, which keep their values.
        let y = file_named(
            "c.yml",
            "resampling:\n  multiprocessing:\n    max_workers: 3\n    queue_sizes:\n    chunk_prefetch: 2\n",
        )
        .unwrap();
        assert_eq!(
            (y.workers.value, y.chunk_prefetch.value, y.chunk_queue.value),
            (Workers::N(3), 2, None)
        );
        // `resampling` empty is still a file without the section, in both formats.
        for (name, text) in [("c.yml", "resampling:\n"), ("c.toml", "[resampling]\n")] {
            let e = file_named(name, text).unwrap_err().to_string();
            assert!(
                e.contains("no 'resampling.multiprocessing' section ('resampling' has nothing"),
                "{e}"
            );
        }
        // A null is an empty table only where a table is read: a setting without a value is
        // refused, and so is an unknown key without one.
        for (text, needle) in [
            (
                "resampling:\n  multiprocessing:\n    max_workers:\n",
                "max_workers: expected a whole number, found null",
            ),
            (
                "resampling:\n  multiprocessing:\n    queue_size:\n",
                "unknown key 'resampling.multiprocessing.queue_size'",
            ),
            (
                "resampling:\n  multiprocessing:\n    queue_sizes:\n      chunk_queue:\n",
                "chunk_queue: expected a whole number, found null",
            ),
        ] {
            let e = file_named("c.yml", text).unwrap_err().to_string();
            assert!(e.contains(needle), "{text}: {e}");
        }
    }

    #[test]
    fn the_seed_yaml_inside_a_whole_application_config() {
        let app = format!(
            "\
app:
  name: data-prep
  stages: [download, resample, upload]
other_stage:
  enabled: true
  threads: 4
resampling:
  method: sum
  target_resolution: 0.01
{}
upload:
  bucket: s3://somewhere
",
            SEED_YAML.trim_start_matches("resampling:\n")
        );
        let s = file_named("config.yml", &app).unwrap();
        assert_seed_values(&s);
        let toml_app = "\
[app]
name = \"data-prep\"
[other_stage]
enabled = true
[resampling]
method = \"sum\"
[resampling.multiprocessing]
max_workers = 50
";
        let t = file_named("config.toml", toml_app).unwrap();
        assert_eq!(t.workers.value, Workers::N(50));
    }

    #[test]
    fn toml_and_yaml_give_the_same_resolved_config() {
        let toml = "\
[resampling.multiprocessing]
enabled = true
max_workers = 50
chunk_prefetch = 4
memory_limit_per_worker = 512
max_attempts = 5
task_timeout = \"30s\"
memory_soft_fraction = 0.5
min_free_memory = \"1GiB\"
[resampling.multiprocessing.queue_sizes]
chunk_queue = 100
result_queue = 50
";
        let yaml = "\
resampling:
  multiprocessing:
    enabled: true
    max_workers: 50
    chunk_prefetch: 4
    memory_limit_per_worker: 512
    max_attempts: 5
    task_timeout: 30s
    memory_soft_fraction: 0.5
    min_free_memory: 1GiB
    queue_sizes:
      chunk_queue: 100
      result_queue: 50
";
        let t = file_named("c.toml", toml).unwrap();
        let y = file_named("c.yml", yaml).unwrap();
        assert_eq!(resolved(&t), resolved(&y));
        assert_eq!(t.max_attempts.value, 5);
        assert_eq!(y.memory_soft_fraction.value, 0.5);
        assert_eq!(t.config_format, Some(Format::Toml));
    }

    #[test]
    fn yaml_typos_and_bad_values_are_named_with_the_file() {
        for (text, needle) in [
            (
                "resampling:\n  multiprocessing:\n    max_wrokers: 3\n",
                "resampling.multiprocessing.max_wrokers",
            ),
            (
                "resampling:\n  multiprocessing:\n    queue_sizes:\n      chunk_queu: 3\n",
                "queue_sizes.chunk_queu",
            ),
            (
                "resampling:\n  multiprocessing:\n    enabled: yes\n",
                "enabled",
            ),
            ("resampling:\n  multiprocessing:\n    enabled:\n", "null"),
            (
                "resampling:\n  multiprocessing:\n    max_workers: many\n",
                "max_workers",
            ),
            ("resampling:\n  multiprocesing: {}\n", "multiprocesing"),
            ("resampling: [\n", "config.yml"),
        ] {
            let e = file_named("config.yml", text).unwrap_err();
            assert!(matches!(e, CoordError::BadInput(_)), "{text}: {e}");
            let e = e.to_string();
            assert!(
                e.contains(needle) && e.contains("config.yml"),
                "{text}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
    }

    #[test]
    fn seed_keys_parse_once_into_their_types() {
        let s = file(
            r#"
[resampling.multiprocessing]
enabled = true
max_workers = 50
chunk_prefetch = 4
memory_limit_per_worker = "512MiB"
min_free_memory = "64"
memory_soft_fraction = 1
task_timeout = "none"
[resampling.multiprocessing.queue_sizes]
chunk_queue = 100
result_queue = 50
"#,
        )
        .unwrap();
        assert_eq!(s.workers.value, Workers::N(50));
        assert!(matches!(s.workers.source, Source::File(_)));
        assert_eq!(s.chunk_prefetch.value, 4);
        assert_eq!(s.memory_limit_per_worker.value, Some(512 << 20));
        assert_eq!(s.min_free_memory.value, Some(64 << 20));
        assert_eq!(s.memory_soft_fraction.value, 1.0);
        assert_eq!(s.task_timeout.value, None);
        assert_eq!(s.chunk_queue.value, Some(100));
        assert_eq!(s.result_queue.value, Some(50));
        assert_eq!(s.max_attempts.value, 3);
        assert_eq!(s.max_attempts.source, Source::Default);
        let bare = file("[resampling.multiprocessing]\nmemory_limit_per_worker = 512\n").unwrap();
        assert_eq!(bare.memory_limit_per_worker.value, Some(512 << 20));
        let off = file("[resampling.multiprocessing]\nmax_workers = 4\nenabled = false\n").unwrap();
        assert_eq!(off.workers.value, Workers::N(0));
    }

    #[test]
    fn bad_and_unknown_keys_are_named() {
        for (text, needle) in [
            (
                "[resampling.multiprocessing]\nmax_wrokers = 3\n",
                "max_wrokers",
            ),
            ("[resampling]\nmultiprocesing = {}\n", "multiprocesing"),
            ("[other]\n", "other"),
            (
                "[resampling.multiprocessing]\nmax_attempts = 0\n",
                "max_attempts",
            ),
            (
                "[resampling.multiprocessing]\nmax_attempts = \"3\"\n",
                "max_attempts",
            ),
            (
                "[resampling.multiprocessing]\nmemory_poll = \"soon\"\n",
                "memory_poll",
            ),
            (
                "[resampling.multiprocessing]\nmemory_soft_fraction = 1.5\n",
                "memory_soft_fraction",
            ),
            (
                "[resampling.multiprocessing.queue_sizes]\nchunk_queue = 0\n",
                "queue_sizes.chunk_queue",
            ),
        ] {
            let e = file(text).unwrap_err().to_string();
            assert!(e.contains(needle) && e.contains("c.toml"), "{text}: {e}");
        }
    }

    #[test]
    fn speculation_reads_as_a_number_a_factor_or_off() {
        let s =
            file("[resampling.multiprocessing]\nspeculation = 3\nspeculation_floor = \"500ms\"\n")
                .unwrap();
        assert_eq!(s.speculation.value, Speculate::Factor(3.0));
        assert_eq!(s.speculation_floor.value, Duration::from_millis(500));
        let s = file_named(
            "c.yml",
            "resampling:\n  multiprocessing:\n    speculation: 2.5x\n",
        )
        .unwrap();
        assert_eq!(s.speculation.value, Speculate::Factor(2.5));
        let s = file("[resampling.multiprocessing]\nspeculation = \"off\"\n").unwrap();
        assert_eq!(s.speculation.value, Speculate::Off);
        let d = settings(None, &PoolArgs::default()).unwrap();
        assert_eq!(
            d.speculation.value,
            Speculate::Factor(DEFAULT_SPECULATION_FACTOR)
        );
        for bad in ["0.5", "fast", "-2", "inf"] {
            let e = file(&format!(
                "[resampling.multiprocessing]\nspeculation = \"{bad}\"\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                e.contains("speculation") && e.contains("c.toml"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn every_row_shows_its_default() {
        let s = settings(None, &PoolArgs::default()).unwrap();
        let rows = s.rows();
        assert_eq!(rows.len(), FILE_KEYS.len());
        assert!(rows.iter().all(|(_, _, src)| **src == Source::Default));
        assert!(s.describe().contains("queue_sizes.chunk_queue"));
    }
}
