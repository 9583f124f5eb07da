//! `--co KEY=VALUE`: GDAL creation options, checked once (every one is `KEY=VALUE`) and then
//! read by key wherever a decision depends on them (the output's tiles, the COG's block
//! size, which defaults apply). GDAL gets them as given, in order.

use crate::error::CoordError;

/// Creation options, each `KEY=VALUE`. A key is looked up case-insensitively, the last one
/// given winning.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CreationOptions(Vec<String>);

impl CreationOptions {
    /// The options of a command line: refused unless each is `KEY=VALUE`.
    pub fn parse(given: Vec<String>) -> Result<CreationOptions, CoordError> {
        if let Some(bad) = given.iter().find(|c| !c.contains('=')) {
            return Err(CoordError::Usage(format!("--co '{bad}' is not KEY=VALUE")));
        }
        Ok(CreationOptions(given))
    }

    /// Options this program sets (each `KEY=VALUE` by construction).
    pub fn of(options: &[&str]) -> CreationOptions {
        CreationOptions(options.iter().map(|s| s.to_string()).collect())
    }

    /// The value given for `key`, if any.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().rev().find_map(|c| {
            let (k, v) = c.split_once('=')?;
            k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
        })
    }

    /// Adds `KEY=VALUE` for each default whose key is not given.
    pub fn with_defaults(mut self, defaults: &[(&str, &str)]) -> CreationOptions {
        for (k, v) in defaults {
            if self.get(k).is_none() {
                self.0.push(format!("{k}={v}"));
            }
        }
        self
    }

    /// Adds one option (after those given: it wins over the same key given before).
    pub fn push(&mut self, key: &str, value: &str) {
        self.0.push(format!("{key}={value}"));
    }

    /// The options as GDAL takes them.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// The output's tile size that GTiff gives these options: `TILED=YES` with
    /// `BLOCKXSIZE`/`BLOCKYSIZE` (each 256 unless set); `None` for a striped output (the
    /// default of GTiff without `TILED`). The writer checks the created file against it.
    pub fn gtiff_tile(&self) -> Option<(u64, u64)> {
        let tiled = self.get("TILED").is_some_and(|v| {
            ["YES", "TRUE", "ON", "1"]
                .iter()
                .any(|y| v.eq_ignore_ascii_case(y))
        });
        if !tiled {
            return None;
        }
        let size = |key: &str| {
            self.get(key)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|&n| n > 0)
                .unwrap_or(256)
        };
        Some((size("BLOCKXSIZE"), size("BLOCKYSIZE")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_output_tile_follows_the_creation_options() {
        let co = CreationOptions::of;
        assert_eq!(
            co(&["TILED=YES", "COMPRESS=DEFLATE"]).gtiff_tile(),
            Some((256, 256))
        );
        assert_eq!(
            co(&["tiled=yes", "BLOCKXSIZE=512", "BLOCKYSIZE=128"]).gtiff_tile(),
            Some((512, 128))
        );
        assert_eq!(co(&["TILED=NO"]).gtiff_tile(), None);
        assert_eq!(co(&["COMPRESS=DEFLATE"]).gtiff_tile(), None);
    }

    #[test]
    fn options_are_key_value_and_defaults_fill_what_is_not_given() {
        assert!(CreationOptions::parse(vec!["TILED".into()]).is_err());
        let co = CreationOptions::parse(vec!["compress=zstd".into()])
            .unwrap()
            .with_defaults(&[("COMPRESS", "DEFLATE"), ("TILED", "YES")]);
        assert_eq!(co.as_slice(), ["compress=zstd", "TILED=YES"]);
        assert_eq!(co.get("Compress"), Some("zstd"));
    }
}
