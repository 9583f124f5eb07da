//! The README's exit-code table is the single source of truth: every code the coordinator can
//! return is in it, and every code in it is one the coordinator can return.

use std::{collections::BTreeSet, path::PathBuf};

use coordinator::{
    error::{CoordError, SideFileError},
    os::gdal_err::GdalFailure,
};

const README: &str = include_str!("../../../README.md");
const EXIT_RS: &str = include_str!("../../protocol/src/exit.rs");

/// The codes in the README's "Exit codes" table.
fn documented() -> BTreeSet<i32> {
    let section = README
        .split("### Exit codes")
        .nth(1)
        .expect("README has an 'Exit codes' section");
    section
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .filter_map(|l| l.trim_matches('|').split('|').next()?.trim().parse().ok())
        .collect()
}

/// The coordinator's codes in `protocol::exit` (not the worker's own, in `mod worker`).
fn declared() -> BTreeSet<i32> {
    EXIT_RS
        .split("pub mod worker")
        .next()
        .unwrap()
        .lines()
        .filter_map(|l| {
            let l = l.trim();
            l.strip_prefix("pub const ")?
                .split('=')
                .nth(1)?
                .trim()
                .trim_end_matches(';')
                .parse()
                .ok()
        })
        .collect()
}

/// One of each error: the match has no wildcard, so a new variant does not compile until it
/// is listed here (and so checked against the table).
fn every_error() -> Vec<CoordError> {
    let p = PathBuf::from("x");
    let all = vec![
        CoordError::InputMissing(p.clone()),
        CoordError::InputNotRaster {
            path: p.clone(),
            reason: String::new(),
            source: None,
        },
        CoordError::InputGdal {
            path: p.clone(),
            step: String::new(),
            source: Box::new(gdal::errors::GdalError::BadArgument(String::new())),
        },
        CoordError::BadInput(String::new()),
        CoordError::OutputExists(p.clone()),
        CoordError::OutputDirMissing(p.clone()),
        CoordError::OutputDirNotWritable {
            path: p.clone(),
            step: "",
            source: std::io::Error::other("x"),
        },
        CoordError::OutputNotFile {
            path: p.clone(),
            what: "",
        },
        CoordError::OutputLocked {
            path: p.clone(),
            holder: String::new(),
        },
        CoordError::OutputAppeared(p.clone()),
        CoordError::ReportPath {
            flag: "--report",
            path: p.clone(),
            why: String::new(),
        },
        CoordError::ReportWrite {
            output: p.clone(),
            flag: "--report",
            path: p.clone(),
            source: SideFileError::Appeared,
        },
        CoordError::Write {
            path: p.clone(),
            reason: String::new(),
        },
        CoordError::write_io(p.clone(), "", std::io::Error::other("x")),
        CoordError::WriteJournal {
            path: p.clone(),
            source: coordinator::journal::AppendError::TooLarge { id: 0, len: 0 },
        },
        CoordError::write_gdal(p.clone(), "", GdalFailure::Reported(String::new())),
        CoordError::JournalExists {
            journal: p.clone(),
            output: p.clone(),
            chunks: 0,
        },
        CoordError::JournalMismatch {
            journal: p.clone(),
            why: String::new(),
        },
        CoordError::MergeIncomplete(String::new()),
        CoordError::Usage(String::new()),
        CoordError::Workers(String::new()),
        CoordError::Resources(String::new()),
        CoordError::Interrupted(""),
        CoordError::Internal(String::new()),
    ];
    for e in &all {
        match e {
            CoordError::InputMissing(_)
            | CoordError::InputNotRaster { .. }
            | CoordError::InputGdal { .. }
            | CoordError::BadInput(_)
            | CoordError::OutputExists(_)
            | CoordError::OutputDirMissing(_)
            | CoordError::OutputDirNotWritable { .. }
            | CoordError::OutputNotFile { .. }
            | CoordError::OutputLocked { .. }
            | CoordError::OutputAppeared(_)
            | CoordError::ReportPath { .. }
            | CoordError::ReportWrite { .. }
            | CoordError::Write { .. }
            | CoordError::WriteIo { .. }
            | CoordError::WriteJournal { .. }
            | CoordError::WriteGdal { .. }
            | CoordError::JournalExists { .. }
            | CoordError::JournalMismatch { .. }
            | CoordError::MergeIncomplete(_)
            | CoordError::Usage(_)
            | CoordError::Workers(_)
            | CoordError::Resources(_)
            | CoordError::Interrupted(_)
            | CoordError::Internal(_) => {}
        }
    }
    all
}

#[test]
fn every_code_the_coordinator_returns_is_documented() {
    let doc = documented();
    assert!(!doc.is_empty(), "no exit-code table found in the README");
    // Success, the usage code clap's errors map to, and a run with quarantined chunks are
    // returned without an error value.
    for code in [
        protocol::exit::OK,
        protocol::exit::USAGE,
        protocol::exit::QUARANTINED,
    ] {
        assert!(
            doc.contains(&code),
            "exit {code} is not in the README table"
        );
    }
    for e in every_error() {
        let code = e.exit_code();
        assert!(
            doc.contains(&code),
            "{e:?} exits {code}, which the README table does not list"
        );
    }
}

#[test]
fn the_table_and_protocol_exit_agree() {
    assert_eq!(
        documented(),
        declared(),
        "README table vs protocol::exit constants"
    );
}
