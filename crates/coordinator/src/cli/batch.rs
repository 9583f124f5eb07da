//! A batch on the command line: `resample IN1 IN2 ... --out-dir DIR` and `--inputs LIST`
//! become the list of inputs and the directory their outputs go to, or the single run's
//! INPUT and OUTPUT are checked to be there. Nothing is opened but the list file.

use std::path::{Path, PathBuf};

use super::{
    config::{Io, Target},
    schema::ResampleArgs,
};
use crate::error::CoordError;

/// Several inputs on one pool, each written to `out_dir` under its own file name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchSpec {
    /// In the order given: the positional arguments, then the list file's lines.
    pub inputs: Vec<PathBuf>,
    pub out_dir: PathBuf,
}

impl BatchSpec {
    /// Where input `input`'s output goes: DIR joined with the input's file name.
    pub fn output_for(&self, input: &Path) -> PathBuf {
        self.out_dir
            .join(input.file_name().unwrap_or(input.as_os_str()))
    }
}

/// The run `r` asks for. Usage errors (exit 2) for forms that do not go together; a list
/// file that cannot be read is bad input (exit 3).
pub fn resolve_target(r: &ResampleArgs) -> Result<Target, CoordError> {
    let usage = |m: &str| Err(CoordError::Usage(m.to_string()));
    let Some(out_dir) = &r.out_dir else {
        if r.inputs.is_some() {
            return usage("--inputs needs --out-dir DIR: a batch writes each output into DIR under its input's file name");
        }
        return match r.paths.as_slice() {
            [input, output] => Ok(Target::Single(Io {
                input: input.clone(),
                output: output.clone(),
            })),
            [] => usage("missing INPUT and OUTPUT (or a batch: --out-dir DIR with inputs, or --inputs LIST)"),
            [_] => usage("missing OUTPUT (or give --out-dir DIR to write the input's output there)"),
            _ => usage("more than one input needs --out-dir DIR (each output is written into DIR under its input's file name)"),
        };
    };
    let mut inputs = r.paths.clone();
    if let Some(list) = &r.inputs {
        inputs.extend(read_list(list)?);
    }
    if inputs.is_empty() {
        return usage("--out-dir DIR needs inputs: as arguments, or in --inputs LIST");
    }
    let spec = BatchSpec {
        inputs,
        out_dir: out_dir.clone(),
    };
    // One output per file name: two inputs that share one would write the same file.
    for (i, a) in spec.inputs.iter().enumerate() {
        if a.file_name().is_none() || a.as_os_str().to_string_lossy().ends_with('/') {
            return Err(CoordError::Usage(format!(
                "input '{}' names a directory, not a raster file",
                a.display()
            )));
        }
        if let Some(b) = spec.inputs[..i]
            .iter()
            .find(|b| b.file_name() == a.file_name())
        {
            return Err(CoordError::Usage(format!(
                "inputs '{}' and '{}' would both be written to '{}': a batch names each output after its input, so file names must differ",
                b.display(),
                a.display(),
                spec.output_for(a).display()
            )));
        }
    }
    Ok(Target::Batch(spec))
}

/// The inputs a list file names: one path per line; blank lines and `#` comments skipped.
fn read_list(list: &Path) -> Result<Vec<PathBuf>, CoordError> {
    let text = std::fs::read_to_string(list)
        .map_err(|e| CoordError::BadInput(format!("--inputs '{}': {e}", list.display())))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(PathBuf::from)
        .collect())
}
