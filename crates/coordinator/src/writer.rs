//! The one writer: owns the output dataset, writes finished chunk windows from their slots
//! (or nodata for quarantined chunks), and on success closes the file under its temporary
//! name so the caller can rename it into place. The output is never visible under its final
//! name unless the whole run succeeded.

use std::{
    path::{Path, PathBuf},
    sync::{mpsc, Arc},
    thread,
    time::Instant,
};

use gdal::{
    raster::{Buffer, RasterCreationOptions},
    Dataset, DriverManager, Metadata,
};
use protocol::{SampleType, TaskId, Window};
use worker::shm::SharedSegment;

use crate::{error::CoordError, raster::BandInfo};

/// Everything needed to create the output.
#[derive(Debug, Clone)]
pub struct OutputSpec {
    pub path: PathBuf,
    pub width: u64,
    pub height: u64,
    pub bands: Vec<BandInfo>,
    pub out_type: SampleType,
    pub nodata: f64,
    pub geo_transform: Option<[f64; 6]>,
    pub projection: String,
    pub creation_options: Vec<String>,
}

/// A finished window to write: from a slot's output region, or nodata.
pub struct WriteJob {
    pub task: TaskId,
    pub out: Window,
    /// Byte offset of the output region in the shared segment; `None` writes nodata.
    pub region: Option<std::ops::Range<usize>>,
}

pub enum WriterMsg {
    Write(WriteJob),
    /// Set metadata, flush and close.
    Close {
        metadata: Vec<(String, String)>,
    },
}

pub enum WriterEvent {
    Written { task: TaskId, micros: u64 },
    Closed,
    Failed(String),
}

/// The temporary name the output is written under, beside the final one.
pub fn temp_path(final_path: &Path) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    final_path.with_file_name(format!(".{name}.partial-{}", std::process::id()))
}

/// Creates the output under `tmp`.
pub fn create(spec: &OutputSpec, tmp: &Path) -> Result<Dataset, CoordError> {
    let err = |reason: String| CoordError::Write {
        path: spec.path.clone(),
        reason,
    };
    let driver = DriverManager::get_driver_by_name("GTiff").map_err(|e| err(e.to_string()))?;
    let opts = RasterCreationOptions::from_iter(spec.creation_options.iter().map(String::as_str));
    let (w, h, n) = (spec.width as usize, spec.height as usize, spec.bands.len());
    let created = match spec.out_type {
        SampleType::U8 => driver.create_with_band_type_with_options::<u8, _>(tmp, w, h, n, &opts),
        SampleType::I16 => driver.create_with_band_type_with_options::<i16, _>(tmp, w, h, n, &opts),
        SampleType::U16 => driver.create_with_band_type_with_options::<u16, _>(tmp, w, h, n, &opts),
        SampleType::I32 => driver.create_with_band_type_with_options::<i32, _>(tmp, w, h, n, &opts),
        SampleType::U32 => driver.create_with_band_type_with_options::<u32, _>(tmp, w, h, n, &opts),
        SampleType::F32 => driver.create_with_band_type_with_options::<f32, _>(tmp, w, h, n, &opts),
        SampleType::F64 => driver.create_with_band_type_with_options::<f64, _>(tmp, w, h, n, &opts),
    };
    let mut ds = created.map_err(|e| err(format!("creating the file: {e}")))?;
    if let Some(gt) = spec.geo_transform {
        ds.set_geo_transform(&gt).map_err(|e| err(e.to_string()))?;
    }
    if !spec.projection.is_empty() {
        ds.set_projection(&spec.projection)
            .map_err(|e| err(e.to_string()))?;
    }
    for (i, b) in spec.bands.iter().enumerate() {
        let mut rb = ds.rasterband(i + 1).map_err(|e| err(e.to_string()))?;
        rb.set_no_data_value(Some(spec.nodata))
            .map_err(|e| err(e.to_string()))?;
        if !b.description.is_empty() {
            rb.set_description(&b.description)
                .map_err(|e| err(e.to_string()))?;
        }
    }
    Ok(ds)
}

/// Runs the writer on its own thread. Events go to `events` through `wrap`. Dropping the
/// sender ends the thread, which closes the dataset; join it before the process exits, so
/// GDAL is not torn down under a dataset still closing.
pub fn spawn<E: Send + 'static>(
    ds: Dataset,
    spec: OutputSpec,
    seg: Arc<SharedSegment>,
    events: mpsc::Sender<E>,
    wrap: fn(WriterEvent) -> E,
) -> (mpsc::Sender<WriterMsg>, thread::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<WriterMsg>();
    let handle = thread::Builder::new()
        .name("writer".into())
        .spawn(move || {
            let mut ds = Some(ds);
            for msg in rx {
                let Some(d) = ds.as_mut() else { break };
                match msg {
                    WriterMsg::Write(job) => {
                        let t0 = Instant::now();
                        let ev = match write_job(d, &spec, &seg, &job) {
                            Ok(()) => WriterEvent::Written {
                                task: job.task,
                                micros: t0.elapsed().as_micros() as u64,
                            },
                            Err(e) => WriterEvent::Failed(format!("chunk {}: {e}", job.task)),
                        };
                        if events.send(wrap(ev)).is_err() {
                            break;
                        }
                    }
                    WriterMsg::Close { metadata } => {
                        let mut d = ds.take().expect("checked above");
                        let mut res = Ok(());
                        for (k, v) in &metadata {
                            if let Err(e) = d.set_metadata_item(k, v, "") {
                                res = Err(e.to_string());
                            }
                        }
                        if res.is_ok() {
                            res = d.flush_cache().map_err(|e| e.to_string());
                        }
                        if res.is_ok() {
                            res = d.close().map_err(|e| e.to_string());
                        }
                        let _ = events.send(wrap(match res {
                            Ok(()) => WriterEvent::Closed,
                            Err(e) => WriterEvent::Failed(format!("closing the file: {e}")),
                        }));
                        break;
                    }
                }
            }
        })
        .expect("spawning the writer thread");
    (tx, handle)
}

fn write_job(
    ds: &mut Dataset,
    spec: &OutputSpec,
    seg: &SharedSegment,
    job: &WriteJob,
) -> Result<(), String> {
    let (w, h) = (job.out.w as usize, job.out.h as usize);
    let n = w * h;
    for i in 0..spec.bands.len() {
        let data: Vec<f64> = match &job.region {
            Some(r) => {
                let start = r.start + i * n * 8;
                // SAFETY: the scheduler gave this slot to the writer alone until it is written.
                let bytes = unsafe { seg.slice(start..start + n * 8) };
                bytemuck::try_cast_slice::<u8, f64>(bytes)
                    .map_err(|e| e.to_string())?
                    .to_vec()
            }
            None => vec![spec.nodata; n],
        };
        let mut rb = ds.rasterband(i + 1).map_err(|e| e.to_string())?;
        let mut buf = Buffer::new((w, h), data);
        rb.write((job.out.x as isize, job.out.y as isize), (w, h), &mut buf)
            .map_err(|e| format!("band {}: {e}", i + 1))?;
    }
    Ok(())
}
