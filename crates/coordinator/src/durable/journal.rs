//! The chunk journal: the one durable format of a run that may be interrupted (`--resume`) or
//! split over nodes (`--shard`, `merge`). It owns the file format, appending with CRCs and
//! batched syncs, and reading back a valid prefix; it does not decide which chunks to run
//! (that is `run`) and does not write GeoTIFFs (that is `writer`).
//!
//! Layout: `MAGIC`, then the header (`u32` length, `u32` CRC-32, the header encoded with the
//! protocol's codec), then records, each `u32` length, `u32` CRC-32 of the payload, and the
//! payload: the plan chunk id (`u32`), its output window (`4 x u64`) and the chunk's output
//! bytes exactly as the kernel left them in the slot (Float64 per band, before the writer's
//! conversion), so that replaying a record through the writer gives the same pixels and the
//! same adjustment counts as the first time. All integers little-endian.
//!
//! Why the bytes live here and not only in the partial GeoTIFF: GDAL rewrites a GTiff's
//! directory at close, so a file being written is unreadable after a SIGKILL. Each record
//! is handed to the kernel with one `write(2)` as soon as its chunk is written, so a SIGKILL
//! of the coordinator loses only the chunks in flight (a record cut in half is a torn tail,
//! detected by its length or CRC and dropped); `fdatasync` runs every [`SYNC_EVERY`] records
//! (and at close), so a power loss loses at most one such batch more.

use std::{
    fs::{File, OpenOptions},
    io::{BufReader, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use serde::{Deserialize, Serialize};
use worker::{SampleType, Window};

use crate::error::CoordError;

/// The file's first bytes: the format and its version.
pub const MAGIC: &[u8; 8] = b"BSJRNL01";
/// Records between two `fdatasync`s.
pub const SYNC_EVERY: u32 = 8;
/// ... or this long since the last one, whichever comes first.
pub const SYNC_AFTER: Duration = Duration::from_secs(2);
/// A record larger than this is garbage, not a chunk (a chunk's output is far smaller).
const MAX_RECORD: u32 = 1 << 30;
/// Record payload bytes before the chunk's output: id and output window.
const RECORD_HEAD: usize = 4 + 4 * 8;

/// What makes two runs produce the same chunks: the input's identity and every option that
/// changes the plan or the pixels, as `(name, value)` pairs in a fixed order so that a
/// refusal can name the first that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanIdentity {
    pub options: Vec<(String, String)>,
    /// Chunks of the whole plan (every shard's together).
    pub chunks: u32,
}

/// Everything `merge` needs to write the output without the input: its shape, type,
/// georeferencing, creation options and the metadata set at close.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutputHeader {
    pub width: u64,
    pub height: u64,
    pub band_descriptions: Vec<String>,
    pub out_type: SampleType,
    pub nodata: Option<f64>,
    /// Per band: what the output carries over from the input (`crate::fidelity`).
    pub band_meta: Vec<crate::fidelity::OutBandMeta>,
    pub area_or_point: Option<String>,
    pub geo_transform: Option<[f64; 6]>,
    pub projection: String,
    pub creation_options: Vec<String>,
    pub metadata: Vec<(String, String)>,
}

/// A journal's header.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Header {
    pub identity: PlanIdentity,
    pub output: OutputHeader,
    /// `(I, N)` for shard I of N; `None` for a whole run.
    pub shard: Option<(u32, u32)>,
    /// The plan chunk ids this journal is for: `start..end`.
    pub range: (u32, u32),
}

/// One journaled chunk, as found by a scan: where its payload is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordMeta {
    pub id: u32,
    pub out: Window,
    /// Offset of the chunk's output bytes in the file.
    pub offset: u64,
    pub len: u64,
}

/// A journal read back: its header and the records of its valid prefix.
#[derive(Debug)]
pub struct Scan {
    pub header: Header,
    pub records: Vec<RecordMeta>,
    /// Bytes of the valid prefix; anything after it is a torn or corrupt tail.
    pub valid_len: u64,
    pub file_len: u64,
}

fn io_err(path: &Path, what: &str, e: std::io::Error) -> CoordError {
    CoordError::write_io(path, format!("{what} the journal"), e)
}

/// Reads exactly `buf.len()` bytes, or returns `false` at a short read (a torn tail).
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<bool> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => return Ok(false),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap_or_default())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap_or_default())
}

impl Scan {
    /// Reads the journal at `path`. `Ok(None)`: the file holds no complete header (the
    /// run that made it died while starting), so it stands for no work at all. Every record
    /// is checked (length, CRC, window inside the output); the first one that fails ends the
    /// valid prefix, and nothing after it is trusted.
    pub fn read(path: &Path) -> Result<Option<Scan>, CoordError> {
        let file = File::open(path).map_err(|e| io_err(path, "opening", e))?;
        let file_len = file
            .metadata()
            .map_err(|e| io_err(path, "reading", e))?
            .len();
        let mut r = BufReader::with_capacity(1 << 20, file);
        let rd = |e| io_err(path, "reading", e);
        let mut head = [0u8; 16];
        if !read_full(&mut r, &mut head).map_err(rd)? {
            return Ok(None);
        }
        if &head[..8] != MAGIC {
            return Err(CoordError::Write {
                path: path.to_path_buf(),
                reason: "not a blocksum journal (wrong magic bytes): move it away".into(),
            });
        }
        let (hlen, hcrc) = (u32_at(&head, 8), u32_at(&head, 12));
        if hlen > MAX_RECORD || u64::from(hlen) + 16 > file_len {
            return Ok(None);
        }
        let mut hbytes = vec![0u8; hlen as usize];
        if !read_full(&mut r, &mut hbytes).map_err(rd)? || crc32fast::hash(&hbytes) != hcrc {
            return Ok(None);
        }
        let header: Header = protocol::decode(&hbytes).map_err(|e| CoordError::Write {
            path: path.to_path_buf(),
            reason: format!("the journal's header does not decode ({e}): move it away"),
        })?;
        let mut pos = 16 + u64::from(hlen);
        let mut records = Vec::new();
        let mut payload = Vec::new();
        loop {
            let mut rh = [0u8; 8];
            if !read_full(&mut r, &mut rh).map_err(rd)? {
                break;
            }
            let (len, crc) = (u32_at(&rh, 0), u32_at(&rh, 4));
            if len > MAX_RECORD
                || (len as usize) < RECORD_HEAD
                || pos + 8 + u64::from(len) > file_len
            {
                break;
            }
            payload.resize(len as usize, 0);
            if !read_full(&mut r, &mut payload).map_err(rd)? || crc32fast::hash(&payload) != crc {
                break;
            }
            let id = u32_at(&payload, 0);
            let out = Window {
                x: u64_at(&payload, 4),
                y: u64_at(&payload, 12),
                w: u64_at(&payload, 20),
                h: u64_at(&payload, 28),
            };
            let o = &header.output;
            let bytes = (len as usize - RECORD_HEAD) as u64;
            let fits = out.x + out.w <= o.width
                && out.y + out.h <= o.height
                && bytes == out.pixels() * 8 * o.band_descriptions.len() as u64
                && (header.range.0..header.range.1).contains(&id);
            if !fits {
                break;
            }
            records.push(RecordMeta {
                id,
                out,
                offset: pos + 8 + RECORD_HEAD as u64,
                len: bytes,
            });
            pos += 8 + u64::from(len);
        }
        Ok(Some(Scan {
            header,
            records,
            valid_len: pos,
            file_len,
        }))
    }

    /// Reads record `m`'s output bytes (checked again: the file may have changed since the
    /// scan).
    pub fn payload(file: &mut File, m: &RecordMeta, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.resize(m.len as usize, 0);
        file.seek(SeekFrom::Start(m.offset))?;
        file.read_exact(buf)
    }
}

/// What the journal cost this run (the report's `journal` entry).
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct JournalStats {
    pub path: String,
    /// Chunks taken from an earlier run's journal instead of being computed.
    pub resumed_chunks: usize,
    /// Records and bytes this run appended.
    pub appended_chunks: u64,
    pub appended_bytes: u64,
    /// Time the writer thread spent appending and syncing.
    pub append_ms: f64,
}

/// Appends records to a journal: one `write(2)` per record, `fdatasync` per batch.
pub struct JournalWriter {
    path: PathBuf,
    file: File,
    pending: u32,
    last_sync: Instant,
    buf: Vec<u8>,
    /// Records appended by this process.
    pub appended: u64,
    /// Bytes appended by this process.
    pub bytes: u64,
    /// Time spent appending and syncing.
    pub busy: Duration,
}

impl JournalWriter {
    /// Creates a new journal at `path` holding `header` (the header is synced, and the
    /// directory entry with it, before any record is appended).
    pub fn create(path: &Path, header: &Header) -> Result<JournalWriter, CoordError> {
        let err = |what, e| io_err(path, what, e);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| err("creating", e))?;
        let h = protocol::encode(header);
        let mut head = Vec::with_capacity(16 + h.len());
        head.extend_from_slice(MAGIC);
        head.extend_from_slice(&(h.len() as u32).to_le_bytes());
        head.extend_from_slice(&crc32fast::hash(&h).to_le_bytes());
        head.extend_from_slice(&h);
        file.write_all(&head).map_err(|e| err("writing", e))?;
        file.sync_all().map_err(|e| err("syncing", e))?;
        sync_dir(path);
        Ok(JournalWriter::from_file(path, file))
    }

    /// Continues the journal at `path` after its valid prefix (`scan`), cutting off a torn
    /// or corrupt tail first.
    pub fn resume(path: &Path, scan: &Scan) -> Result<JournalWriter, CoordError> {
        let err = |what, e| io_err(path, what, e);
        let mut file = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| err("opening", e))?;
        if scan.valid_len < scan.file_len {
            tracing::warn!(
                "the journal '{}' ends in {} byte(s) of a torn or corrupt record: dropped",
                path.display(),
                scan.file_len - scan.valid_len
            );
            file.set_len(scan.valid_len)
                .map_err(|e| err("truncating", e))?;
            file.sync_all().map_err(|e| err("syncing", e))?;
        }
        file.seek(SeekFrom::Start(scan.valid_len))
            .map_err(|e| err("seeking in", e))?;
        Ok(JournalWriter::from_file(path, file))
    }

    fn from_file(path: &Path, file: File) -> JournalWriter {
        JournalWriter {
            path: path.to_path_buf(),
            file,
            pending: 0,
            last_sync: Instant::now(),
            buf: Vec::new(),
            appended: 0,
            bytes: 0,
            busy: Duration::ZERO,
        }
    }

    /// Appends chunk `id`'s output.
    pub fn append(&mut self, id: u32, out: Window, bytes: &[u8]) -> Result<(), AppendError> {
        let t0 = Instant::now();
        let len = RECORD_HEAD + bytes.len();
        if len > MAX_RECORD as usize {
            return Err(AppendError::TooLarge { id, len });
        }
        self.buf.clear();
        self.buf.extend_from_slice(&(len as u32).to_le_bytes());
        self.buf.extend_from_slice(&[0; 4]);
        self.buf.extend_from_slice(&id.to_le_bytes());
        for v in [out.x, out.y, out.w, out.h] {
            self.buf.extend_from_slice(&v.to_le_bytes());
        }
        self.buf.extend_from_slice(bytes);
        let crc = crc32fast::hash(&self.buf[8..]);
        self.buf[4..8].copy_from_slice(&crc.to_le_bytes());
        self.file
            .write_all(&self.buf)
            .map_err(|source| AppendError::Io {
                step: "appending to",
                path: self.path.clone(),
                source,
            })?;
        self.pending += 1;
        self.appended += 1;
        self.bytes += self.buf.len() as u64;
        if self.pending >= SYNC_EVERY || self.last_sync.elapsed() >= SYNC_AFTER {
            self.sync()?;
        }
        self.busy += t0.elapsed();
        Ok(())
    }

    /// Makes every appended record durable.
    pub fn sync(&mut self) -> Result<(), AppendError> {
        if self.pending > 0 {
            self.file.sync_data().map_err(|source| AppendError::Io {
                step: "syncing",
                path: self.path.clone(),
                source,
            })?;
        }
        self.pending = 0;
        self.last_sync = Instant::now();
        Ok(())
    }
}

/// A record that could not be appended to the journal, or made durable.
#[derive(Debug, thiserror::Error)]
pub enum AppendError {
    #[error("chunk {id}: {len} bytes of output are more than a journal record holds")]
    TooLarge { id: u32, len: usize },
    #[error("{step} the journal '{}': {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Makes a new or removed name in `path`'s directory durable (best effort: some file systems
/// refuse to sync a directory).
pub fn sync_dir(path: &Path) {
    if let Ok(d) = File::open(crate::output::parent_dir(path)) {
        let _ = d.sync_all();
    }
}

/// Where a whole run's journal lives: `OUTPUT.journal`, beside the output.
pub fn path_for(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".journal");
    PathBuf::from(s)
}

/// The first option that differs between a journal's identity and this run's, as a
/// sentence fragment, or `None` when they are the same plan.
pub fn difference(journal: &PlanIdentity, run: &PlanIdentity) -> Option<String> {
    difference_between((journal, "its"), (run, "this run's"))
}

/// The first difference between two identities, each value told with its owner's possessive
/// (`("shard 1's", ..)`): "shard 1's --factor is 8, shard 0's is 4".
pub fn difference_between(
    (a, a_is): (&PlanIdentity, &str),
    (b, b_is): (&PlanIdentity, &str),
) -> Option<String> {
    for (x, y) in a.options.iter().zip(&b.options) {
        if x != y {
            let (k, told_x, told_y) = (&x.0, told(&x.0, &x.1), told(&y.0, &y.1));
            return Some(format!("{a_is} {k} is {told_x}, {b_is} is {told_y}"));
        }
    }
    if a.options.len() != b.options.len() {
        return Some(format!(
            "{a_is} options and {b_is} come from different versions of this tool"
        ));
    }
    if a.chunks != b.chunks {
        return Some(format!(
            "{a_is} plan has {} chunks, {b_is} {}",
            a.chunks, b.chunks
        ));
    }
    None
}

/// An identity's value for a message: a target grid's transform is kept bit for bit
/// (`WxH [bits; 6]`) and told in numbers (the shortest text that gives those bits back, so
/// two grids that differ never read alike).
fn told(key: &str, value: &str) -> String {
    let numbers = || {
        let (size, bits) = value.split_once(' ')?;
        let g = bits
            .trim_matches(|c| c == '[' || c == ']')
            .split(", ")
            .map(|b| b.parse::<u64>().ok().map(f64::from_bits))
            .collect::<Option<Vec<f64>>>()?;
        (g.len() == 6).then(|| {
            format!(
                "{size} cells of {} x {} from ({}, {})",
                g[1], -g[5], g[0], g[3]
            )
        })
    };
    match key {
        "target grid" => numbers().unwrap_or_else(|| value.to_string()),
        _ => value.to_string(),
    }
}

/// `1-3, 7, 9-12`: chunk ids for a message, the first `limit` runs of them.
pub fn ranges(ids: &[u32], limit: usize) -> String {
    let mut runs: Vec<(u32, u32)> = Vec::new();
    for &i in ids {
        match runs.last_mut() {
            Some(r) if r.1 + 1 == i => r.1 = i,
            _ => runs.push((i, i)),
        }
    }
    let mut parts: Vec<String> = runs
        .iter()
        .take(limit)
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    if runs.len() > limit {
        parts.push(format!("... ({} ids in all)", ids.len()));
    }
    parts.join(", ")
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn a_target_grid_that_differs_is_told_in_numbers() {
        let grid = |gt: [f64; 6]| PlanIdentity {
            options: vec![(
                "target grid".into(),
                format!("10x8 {:?}", gt.map(f64::to_bits)),
            )],
            chunks: 1,
        };
        let a = grid([10.0, 0.0007, 0.0, 50.0, 0.0, -0.0007]);
        let b = grid([10.0, 0.0009, 0.0, 50.0, 0.0, -0.0009]);
        assert_eq!(
            difference(&a, &b).unwrap(),
            "its target grid is 10x8 cells of 0.0007 x 0.0007 from (10, 50), \
             this run's is 10x8 cells of 0.0009 x 0.0009 from (10, 50)"
        );
        assert_eq!(difference(&a, &a), None);
    }

    /// A journal header of a 4 x 4 output in 4 chunks, of input `a.tif`.
    pub(crate) fn header() -> Header {
        Header {
            identity: PlanIdentity {
                options: vec![("input".into(), "a.tif".into())],
                chunks: 4,
            },
            output: OutputHeader {
                width: 4,
                height: 4,
                band_descriptions: vec![String::new()],
                out_type: SampleType::F64,
                nodata: Some(f64::NAN),
                band_meta: Vec::new(),
                area_or_point: None,
                geo_transform: None,
                projection: String::new(),
                creation_options: vec![],
                metadata: vec![],
            },
            shard: None,
            range: (0, 4),
        }
    }

    fn row(y: u64) -> Window {
        Window {
            x: 0,
            y,
            w: 4,
            h: 1,
        }
    }

    #[test]
    fn a_torn_or_corrupt_tail_ends_the_valid_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        let mut w = JournalWriter::create(&p, &header()).unwrap();
        for i in 0..4u32 {
            w.append(i, row(i as u64), &[i as u8; 32]).unwrap();
        }
        w.sync().unwrap();
        drop(w);
        let full = Scan::read(&p).unwrap().unwrap();
        assert_eq!(full.records.len(), 4);
        assert_eq!(full.valid_len, full.file_len);
        // Truncated mid-record: three records survive.
        let len = full.file_len;
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 5)
            .unwrap();
        let torn = Scan::read(&p).unwrap().unwrap();
        assert_eq!(
            torn.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            [0, 1, 2]
        );
        // A flipped byte inside record 1's output: records 1 and after are dropped.
        let mut bytes = std::fs::read(&p).unwrap();
        let at = torn.records[1].offset as usize + 3;
        bytes[at] ^= 0x40;
        std::fs::write(&p, &bytes).unwrap();
        let flipped = Scan::read(&p).unwrap().unwrap();
        assert_eq!(flipped.records.len(), 1);
        // Appending after a resume continues from the valid prefix.
        let mut w = JournalWriter::resume(&p, &flipped).unwrap();
        w.append(3, row(3), &[9; 32]).unwrap();
        w.sync().unwrap();
        let again = Scan::read(&p).unwrap().unwrap();
        assert_eq!(
            again.records.iter().map(|r| r.id).collect::<Vec<_>>(),
            [0, 3]
        );
        assert_eq!(again.valid_len, again.file_len);
    }

    #[test]
    fn a_torn_header_stands_for_no_journal() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("j");
        JournalWriter::create(&p, &header()).unwrap();
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        assert!(Scan::read(&p).unwrap().is_none());
        std::fs::write(&p, b"not a journal at all").unwrap();
        assert!(Scan::read(&p).is_err());
    }

    #[test]
    fn ranges_compress_runs() {
        assert_eq!(ranges(&[1, 2, 3, 7, 9, 10], 10), "1-3, 7, 9-10");
        assert_eq!(ranges(&[1, 3, 5], 2), "1, 3, ... (3 ids in all)");
    }
}
