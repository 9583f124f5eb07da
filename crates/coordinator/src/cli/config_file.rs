//! Reading `--config`: a TOML or YAML file, possibly the whole application's config, into
//! one format-neutral tree, and out of it the one section the tool reads,
//! `resampling.multiprocessing` (the seed's keys and ours), as dotted keys. Every other
//! top-level section, and every other key under `resampling`, is the application's and is
//! ignored; inside the section, what no row takes is an unknown key (the caller's check).
//! The format: `.yml`/`.yaml` is YAML, `.toml` is TOML, any other name is read as TOML and,
//! if that fails, as YAML. One rule for both: a section with nothing in it is an empty
//! section, whether TOML's empty table or YAML's null (a key with nothing under it but
//! comments), at every level the tool reads (the file, `resampling`, the section, its
//! `queue_sizes`).

use std::{collections::BTreeMap, fmt, path::Path};

/// The section the tool reads: every row's key lives under it.
pub const SECTION: [&str; 2] = ["resampling", "multiprocessing"];

/// How the file was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Toml,
    Yaml,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Toml => "TOML",
            Format::Yaml => "YAML",
        })
    }
}

/// One value of the file, whatever its format.
#[derive(Debug, Clone, PartialEq)]
pub enum FileValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Table(BTreeMap<String, FileValue>),
    /// YAML's null: a key with no value (`queue_sizes:` and nothing under it but comments).
    /// TOML has none.
    Null,
    /// Anything else (a list, a date), by its type's name.
    Other(&'static str),
}

impl FileValue {
    /// The type's name for messages ("expected true or false, found string").
    pub fn type_str(&self) -> &'static str {
        match self {
            FileValue::Bool(_) => "boolean",
            FileValue::Int(_) => "integer",
            FileValue::Float(_) => "float",
            FileValue::Str(_) => "string",
            FileValue::Table(_) => "table",
            FileValue::Null => "null",
            FileValue::Other(t) => t,
        }
    }

    /// The table where a section is expected: a null is an empty one (nothing written under
    /// the key), as TOML's empty table is; any other value is given back.
    fn into_section(self) -> Result<BTreeMap<String, FileValue>, FileValue> {
        match self {
            FileValue::Table(t) => Ok(t),
            FileValue::Null => Ok(BTreeMap::new()),
            v => Err(v),
        }
    }
}

/// The section's values by dotted key (`queue_sizes.chunk_queue`), and the file's format.
#[derive(Debug)]
pub struct Section {
    pub format: Format,
    pub keys: BTreeMap<String, FileValue>,
}

/// Reads `path` and returns its section, flattened into the tables that hold `row_keys`
/// (a table no row lives in stays one key, so that it is reported as unknown). The error
/// is the reason alone; the caller names the file.
pub fn read(path: &Path, row_keys: &[&str]) -> Result<Section, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let (format, root) = parse(path, &text)?;
    let mut keys = BTreeMap::new();
    flatten(section(root)?, "", row_keys, &mut keys);
    Ok(Section { format, keys })
}

/// Parses by extension, or TOML then YAML when the name does not say.
fn parse(path: &Path, text: &str) -> Result<(Format, FileValue), String> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("yml" | "yaml") => Ok((Format::Yaml, yaml(text)?)),
        Some("toml") => Ok((Format::Toml, toml(text)?)),
        _ => match toml(text) {
            Ok(v) => Ok((Format::Toml, v)),
            Err(t) => yaml(text)
                .map(|v| (Format::Yaml, v))
                .map_err(|y| format!("neither TOML ({t}) nor YAML ({y})")),
        },
    }
}

fn toml(text: &str) -> Result<FileValue, String> {
    let root: toml::Table = toml::from_str(text).map_err(|e| e.message().trim().to_string())?;
    Ok(from_toml(toml::Value::Table(root)))
}

fn from_toml(v: toml::Value) -> FileValue {
    use toml::Value as V;
    match v {
        V::Boolean(b) => FileValue::Bool(b),
        V::Integer(i) => FileValue::Int(i),
        V::Float(f) => FileValue::Float(f),
        V::String(s) => FileValue::Str(s),
        V::Table(t) => FileValue::Table(t.into_iter().map(|(k, v)| (k, from_toml(v))).collect()),
        V::Array(_) => FileValue::Other("array"),
        V::Datetime(_) => FileValue::Other("datetime"),
    }
}

/// YAML, with `<<` merge keys applied (application configs use them for shared defaults).
fn yaml(text: &str) -> Result<FileValue, String> {
    let mut root: serde_norway::Value = serde_norway::from_str(text).map_err(|e| e.to_string())?;
    root.apply_merge().map_err(|e| e.to_string())?;
    match root {
        // An empty document is null: an empty config, as an empty TOML file is.
        v @ (serde_norway::Value::Null | serde_norway::Value::Mapping(_)) => from_yaml(v, ""),
        v => Err(format!(
            "expected a mapping at the top, found {}",
            yaml_type(&v)
        )),
    }
}

fn from_yaml(v: serde_norway::Value, at: &str) -> Result<FileValue, String> {
    use serde_norway::Value as V;
    Ok(match v {
        V::Bool(b) => FileValue::Bool(b),
        V::Number(n) => match n.as_i64() {
            Some(i) => FileValue::Int(i),
            None if n.is_f64() => FileValue::Float(n.as_f64().unwrap_or(f64::NAN)),
            None => FileValue::Other("integer too large"),
        },
        V::String(s) => FileValue::Str(s),
        V::Null => FileValue::Null,
        V::Mapping(m) => {
            let mut t = BTreeMap::new();
            for (k, v) in m {
                let key = match k {
                    V::String(s) => s,
                    V::Bool(b) => b.to_string(),
                    V::Number(n) => n.to_string(),
                    k => return Err(format!("{at}: a key that is a {}", yaml_type(&k))),
                };
                let path = if at.is_empty() {
                    key.clone()
                } else {
                    format!("{at}.{key}")
                };
                t.insert(key, from_yaml(v, &path)?);
            }
            FileValue::Table(t)
        }
        v => FileValue::Other(yaml_type(&v)),
    })
}

fn yaml_type(v: &serde_norway::Value) -> &'static str {
    use serde_norway::Value as V;
    match v {
        V::Null => "null",
        V::Bool(_) => "boolean",
        V::Number(_) => "number",
        V::String(_) => "string",
        V::Sequence(_) => "sequence",
        V::Mapping(_) => "mapping",
        V::Tagged(_) => "tagged value",
    }
}

/// The section's table. A file with none is refused, naming what it has at the level where
/// the path stops, so that a misspelt section name (`multiprocesing`) is not silently
/// ignored along with the application's own sections.
fn section(root: FileValue) -> Result<BTreeMap<String, FileValue>, String> {
    let mut table = root
        .into_section()
        .map_err(|v| format!("expected a table at the top, found {}", v.type_str()))?;
    let mut at = Vec::new();
    for name in SECTION {
        let here = if at.is_empty() {
            "the file".to_string()
        } else {
            format!("'{}'", at.join("."))
        };
        at.push(name);
        table = match table.remove(name).map(FileValue::into_section) {
            Some(Ok(t)) => t,
            Some(Err(v)) => {
                return Err(format!(
                    "'{}' must be a table, found {}",
                    at.join("."),
                    v.type_str()
                ))
            }
            None => {
                let has: Vec<String> = table.keys().cloned().collect();
                return Err(format!(
                    "no '{}' section ({here} has {}; the tool reads only that section)",
                    SECTION.join("."),
                    if has.is_empty() {
                        "nothing".to_string()
                    } else {
                        has.join(", ")
                    }
                ));
            }
        };
    }
    Ok(table)
}

/// Every value of `table` by its dotted path, descending only into tables some row's key
/// lives under.
fn flatten(
    table: BTreeMap<String, FileValue>,
    prefix: &str,
    row_keys: &[&str],
    out: &mut BTreeMap<String, FileValue>,
) {
    for (k, v) in table {
        let path = format!("{prefix}{k}");
        let holds_rows = row_keys.iter().any(|r| r.starts_with(&format!("{path}.")));
        // A table rows live under is descended into (a null one holds nothing); anything
        // else is a key, known or not.
        let v = if holds_rows { v.into_section() } else { Err(v) };
        match v {
            Ok(t) => flatten(t, &format!("{path}."), row_keys, out),
            Err(v) => {
                out.insert(path, v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(name: &str, text: &str) -> Result<Section, String> {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        read(&p, &["max_workers", "queue_sizes.chunk_queue"])
    }

    #[test]
    fn the_format_follows_the_name_then_the_content() {
        let yaml = "resampling:\n  multiprocessing:\n    max_workers: 2\n";
        let toml = "[resampling.multiprocessing]\nmax_workers = 2\n";
        assert_eq!(read_text("c.yml", yaml).unwrap().format, Format::Yaml);
        assert_eq!(read_text("c.YAML", yaml).unwrap().format, Format::Yaml);
        assert_eq!(read_text("config", yaml).unwrap().format, Format::Yaml);
        assert_eq!(read_text("config", toml).unwrap().format, Format::Toml);
        assert_eq!(read_text("c.toml", toml).unwrap().format, Format::Toml);
        // The name decides: YAML in a .toml file is a TOML error, not a guess.
        assert!(read_text("c.toml", yaml).unwrap_err().contains("expected"));
        let both = read_text("config", "resampling: [\n").unwrap_err();
        assert!(
            both.contains("neither TOML") && both.contains("YAML"),
            "{both}"
        );
    }

    #[test]
    fn yaml_values_map_onto_the_same_tree() {
        let s = read_text(
            "c.yaml",
            "base: &b\n  max_workers: 3\nresampling:\n  multiprocessing:\n    <<: *b\n    queue_sizes:\n      chunk_queue: 7\n      other: x\n",
        )
        .unwrap();
        assert_eq!(s.keys["max_workers"], FileValue::Int(3));
        assert_eq!(s.keys["queue_sizes.chunk_queue"], FileValue::Int(7));
        assert_eq!(s.keys["queue_sizes.other"], FileValue::Str("x".into()));
    }

    #[test]
    fn a_missing_section_names_what_the_file_has() {
        let e = read_text(
            "c.yml",
            "resampling:\n  multiprocesing: {}\n  method: sum\n",
        )
        .unwrap_err();
        assert!(e.contains("'resampling' has method, multiprocesing"), "{e}");
        let e = read_text("c.yml", "other: 1\n").unwrap_err();
        assert!(e.contains("the file has other"), "{e}");
        let e = read_text("c.yml", "- 1\n").unwrap_err();
        assert!(e.contains("mapping at the top"), "{e}");
        let e = read_text("c.yml", "resampling:\n  multiprocessing: 3\n").unwrap_err();
        assert!(e.contains("must be a table"), "{e}");
    }

    #[test]
    fn a_null_where_a_table_is_read_is_an_empty_table() {
        for text in [
            "resampling:\n  multiprocessing:\n",
            "resampling:\n  multiprocessing: null\n",
            "resampling:\n  multiprocessing:\n    queue_sizes:\n",
            "resampling:\n  multiprocessing:\n    queue_sizes: ~\n",
        ] {
            let keys = read_text("c.yml", text)
                .unwrap_or_else(|e| panic!("{text:?}: {e}"))
                .keys;
            assert!(keys.is_empty(), "{text:?}: {keys:?}");
        }
        // An empty file and an empty `resampling` read as empty: only the section is missing.
        for text in ["", "# nothing\n"] {
            let e = read_text("c.yml", text).unwrap_err();
            assert!(e.contains("the file has nothing"), "{text:?}: {e}");
        }
        let e = read_text("c.yml", "resampling:\n").unwrap_err();
        assert!(e.contains("'resampling' has nothing"), "{e}");
        // A null elsewhere is a value, for the row (or the unknown-key check) to judge.
        let s = read_text(
            "c.yml",
            "resampling:\n  multiprocessing:\n    max_workers:\n    other:\n",
        )
        .unwrap();
        assert_eq!(s.keys["max_workers"], FileValue::Null);
        assert_eq!(s.keys["other"], FileValue::Null);
    }
}
