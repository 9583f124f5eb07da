//! `coordinator merge OUTPUT`: the shards' journals (OUTPUT.shards/) into one GeoTIFF, or with
//! `--vrt` into one GeoTIFF per shard and a VRT over them. It checks that every shard of one
//! plan is there and that together they hold every chunk, and refuses, naming what is
//! missing, before writing anything. Memory stays flat: one record at a time goes through
//! the same writer a one-node run uses, so the pixels and metadata are the same.

use std::{
    fs::File,
    path::{Path, PathBuf},
};

use protocol::TaskId;

use crate::{
    error::CoordError,
    journal::{self, Header, Scan},
    output,
    raster::BandInfo,
    shard::{self, Shard},
    writer::{self, Adjusted, GtiffSink, OutputSpec},
};

/// What `merge` is asked to do.
#[derive(Debug, Clone)]
pub struct MergeConfig {
    pub output: PathBuf,
    pub vrt: bool,
    pub overwrite: bool,
    pub keep_shards: bool,
}

/// One shard's journal, scanned.
struct ShardJournal {
    shard: Shard,
    path: PathBuf,
    scan: Scan,
}

/// Finds, reads and checks every shard's journal: one N, every index, one plan, ranges that
/// tile the plan, and every chunk of each range journaled.
/// The shard journals in `dir`, by their names; refused when one is not a regular file.
fn journals_in(dir: &Path) -> Result<Vec<(Shard, PathBuf)>, CoordError> {
    let refuse = |m: String| Err(CoordError::MergeIncomplete(m));
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return refuse(format!(
                "no shard journals at '{}' ({e}): run the shards first (--shard I/N)",
                dir.display()
            ))
        }
    };
    let mut found: Vec<(Shard, PathBuf)> = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(s) = shard::parse_journal_name(&name) {
            // A FIFO would block the read forever, a device read garbage.
            if !e.file_type().is_ok_and(|t| t.is_file()) {
                return refuse(format!("'{}' is not a regular file", e.path().display()));
            }
            found.push((s, e.path()));
        }
    }
    Ok(found)
}

fn gather(dir: &Path) -> Result<Vec<ShardJournal>, CoordError> {
    let refuse = |m: String| Err(CoordError::MergeIncomplete(m));
    let mut found = journals_in(dir)?;
    let Some(n) = found.first().map(|(s, _)| s.count) else {
        return refuse(format!(
            "'{}' holds no shard journal: run the shards first (--shard I/N)",
            dir.display()
        ));
    };
    if let Some((other, _)) = found.iter().find(|(s, _)| s.count != n) {
        return refuse(format!(
            "'{}' holds journals of {n} and of {} shards: remove the stale ones",
            dir.display(),
            other.count
        ));
    }
    found.sort_by_key(|(s, _)| s.index);
    let mut shards = Vec::new();
    let mut missing = Vec::new();
    for i in 0..n {
        let Some((s, path)) = found.iter().find(|(s, _)| s.index == i) else {
            missing.push(i);
            continue;
        };
        engine::interrupt::check()?;
        match Scan::read(path)? {
            Some(scan) => shards.push(ShardJournal {
                shard: *s,
                path: path.clone(),
                scan,
            }),
            None => missing.push(i),
        }
    }
    if !missing.is_empty() {
        return refuse(format!(
            "shard(s) {} of {n} missing in '{}' (run them: --shard I/{n})",
            journal::ranges(&missing, 20),
            dir.display()
        ));
    }
    if let Some(why) = disagreement(&shards) {
        return refuse(why);
    }
    let first: &Header = &shards[0].scan.header;
    let mut next = 0;
    let mut incomplete = Vec::new();
    for sj in &shards {
        let h = &sj.scan.header;
        if h.shard != Some((sj.shard.index, n)) || h.range.0 != next {
            return refuse(format!(
                "the journal '{}' is not shard {}/{n} of this plan",
                sj.path.display(),
                sj.shard.index
            ));
        }
        next = h.range.1;
        let mut have = vec![false; (h.range.1 - h.range.0) as usize];
        for r in &sj.scan.records {
            have[(r.id - h.range.0) as usize] = true;
        }
        let lacking: Vec<u32> = (h.range.0..h.range.1)
            .filter(|&i| !have[(i - h.range.0) as usize])
            .collect();
        if !lacking.is_empty() {
            incomplete.push(format!(
                "shard {} lacks chunk(s) {}",
                sj.shard.index,
                journal::ranges(&lacking, 10)
            ));
        }
    }
    if next != first.identity.chunks {
        return refuse(format!(
            "the shards cover chunks 0..{next} of a plan of {}",
            first.identity.chunks
        ));
    }
    if !incomplete.is_empty() {
        return refuse(format!(
            "{} (rerun those shards with --resume)",
            incomplete.join("; ")
        ));
    }
    Ok(shards)
}

/// Shards of different plans, or of one plan describing different outputs: which shards
/// side with shard 0 and which do not, and the first value where the first of those differs
/// from shard 0 (each value told with its own shard).
fn disagreement(shards: &[ShardJournal]) -> Option<String> {
    let first = &shards[0];
    // The output is compared encoded: bit for bit, so that a NaN nodata equals itself.
    let output_of = |sj: &ShardJournal| protocol::encode(&sj.scan.header.output);
    let plan_of = |sj: &ShardJournal| {
        journal::difference_between(
            (
                &sj.scan.header.identity,
                &format!("shard {}'s", sj.shard.index),
            ),
            (&first.scan.header.identity, "shard 0's"),
        )
    };
    let (with, against): (Vec<&ShardJournal>, Vec<&ShardJournal>) = shards
        .iter()
        .partition(|sj| plan_of(sj).is_none() && output_of(sj) == output_of(first));
    let odd = against.first()?;
    let ids = |v: &[&ShardJournal]| {
        let ids: Vec<u32> = v.iter().map(|sj| sj.shard.index).collect();
        let s = if ids.len() == 1 { "" } else { "s" };
        format!("shard{s} {}", journal::ranges(&ids, 10))
    };
    let why = plan_of(odd).unwrap_or_else(|| {
        format!(
            "shard {} describes another output than shard 0",
            odd.shard.index
        )
    });
    Some(format!(
        "{} and {} belong to different plans ({why}): rerun the shards of one plan",
        ids(&with),
        ids(&against)
    ))
}

fn spec_of(h: &Header, path: &Path, height: u64, y0: u64) -> OutputSpec {
    let o = &h.output;
    OutputSpec {
        path: path.to_path_buf(),
        width: o.width,
        height,
        bands: o
            .band_descriptions
            .iter()
            .enumerate()
            .map(|(i, d)| BandInfo {
                index: i as u32 + 1,
                sample: o.out_type,
                nodata: None,
                description: d.clone(),
                masked: false,
                meta: Default::default(),
            })
            .collect(),
        out_type: o.out_type,
        nodata: o.nodata,
        // A band of rows starting at output row y0.
        geo_transform: o.geo_transform.map(|g| {
            let y = y0 as f64;
            [g[0] + y * g[2], g[1], g[2], g[3] + y * g[5], g[4], g[5]]
        }),
        projection: o.projection.clone(),
        creation_options: o.creation_options.clone(),
        band_meta: o.band_meta.clone(),
        area_or_point: o.area_or_point.clone(),
    }
}

/// Writes the records of `shards` into `sink`, shifted up by `y0` rows, each chunk once.
fn copy(shards: &[&ShardJournal], sink: &mut GtiffSink, y0: u64) -> Result<(), CoordError> {
    let mut buf = Vec::new();
    for sj in shards {
        let mut file =
            File::open(&sj.path).map_err(|e| CoordError::write_io(&sj.path, "reopening", e))?;
        let (start, end) = sj.scan.header.range;
        let mut seen = vec![false; (end - start) as usize];
        for r in &sj.scan.records {
            let k = (r.id - start) as usize;
            if std::mem::replace(&mut seen[k], true) {
                continue;
            }
            engine::interrupt::checkpoint("merge-copy")?;
            Scan::payload(&mut file, r, &mut buf).map_err(|e| {
                CoordError::write_io(&sj.path, format!("reading chunk {}", r.id), e)
            })?;
            let out = worker::Window {
                y: r.out.y - y0,
                ..r.out
            };
            engine::ChunkSink::write(sink, TaskId(r.id), out, Some(&buf))?;
        }
    }
    Ok(())
}

/// The GDAL block cache for writing: two rows of output tiles, within 8-256 MiB, whatever
/// the raster's height.
fn set_cache(h: &Header) {
    let o = &h.output;
    let row = o.width * 256 * o.out_type.size() * o.band_descriptions.len() as u64;
    crate::os::set_gdal_cache((2 * row).clamp(8 << 20, 256 << 20));
}

/// Runs `coordinator merge`; returns the line to print.
pub fn merge(cfg: &MergeConfig) -> Result<String, CoordError> {
    let dir = shard::dir_for(&cfg.output);
    output::check_paths(&dir, &cfg.output, None, cfg.overwrite)?;
    let mut staging = output::Staging::lock(&cfg.output)?;
    // A `--vrt` merge that was killed (SIGKILL, out of memory) left a shard's GeoTIFF under
    // its temporary name: with the lock held, one whose process is gone is nobody's.
    output::remove_stale_temps_in(&dir, |name| shard::parse_tif_name(name).is_some());
    let shards = gather(&dir)?;
    let header = shards[0].scan.header.clone();
    set_cache(&header);
    let n = shards.len();
    let chunks = header.identity.chunks;
    if cfg.vrt {
        let tifs = write_vrt(&shards, &header, &cfg.output, staging.temp())?;
        let vrt = tifs.len();
        // The shards' GeoTIFFs go in place only with the VRT: an interrupt before leaves
        // neither.
        engine::interrupt::check()?;
        for (tif, staged) in tifs {
            staged.commit(true).map_err(|e| {
                CoordError::write_io(tif, "moving the shard's GeoTIFF into place", e)
            })?;
        }
        staging.commit(cfg.overwrite)?;
        return Ok(format!(
            "wrote {} (a VRT over {vrt} shard GeoTIFF(s) in {}): {chunks} chunks from {n} shard(s)",
            cfg.output.display(),
            dir.display()
        ));
    }
    let spec = spec_of(&header, &cfg.output, header.output.height, 0);
    let ds = writer::create(&spec, staging.temp())?;
    let mut sink = GtiffSink::new(ds, spec, staging.temp().to_path_buf()).writeback(true);
    let all: Vec<&ShardJournal> = shards.iter().collect();
    copy(&all, &mut sink, 0)?;
    engine::ChunkSink::close(sink, header.output.metadata.clone())?;
    staging.commit(cfg.overwrite)?;
    drop(staging);
    if !cfg.keep_shards {
        for sj in &shards {
            let _ = std::fs::remove_file(&sj.path);
        }
        // Only if nothing else is left in it.
        let _ = std::fs::remove_dir(&dir);
    }
    Ok(format!(
        "wrote {} ({}x{}, {} band(s), {}): {chunks} chunks from {n} shard(s)",
        cfg.output.display(),
        header.output.width,
        header.output.height,
        header.output.band_descriptions.len(),
        header.output.out_type
    ))
}

fn xml(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// One GeoTIFF per non-empty shard beside its journal, under its temporary name, then the
/// VRT text into `tmp`. Returns the GeoTIFFs, still to be moved into place.
fn write_vrt(
    shards: &[ShardJournal],
    header: &Header,
    output: &Path,
    tmp: &Path,
) -> Result<Vec<(PathBuf, output::StagedFile)>, CoordError> {
    let o = &header.output;
    let mut sources: Vec<(String, u64, u64)> = Vec::new();
    let mut staged_tifs = Vec::new();
    let mut adjusted = vec![Adjusted::default(); o.band_descriptions.len()];
    for sj in shards {
        let recs = &sj.scan.records;
        let (Some(y0), Some(y1)) = (
            recs.iter().map(|r| r.out.y).min(),
            recs.iter().map(|r| r.out.y + r.out.h).max(),
        ) else {
            continue;
        };
        let tif = sj.path.with_extension("tif");
        let staged = output::StagedFile::new(&tif);
        let part = staged.temp().to_path_buf();
        let spec = spec_of(header, &tif, y1 - y0, y0);
        let ds = writer::create(&spec, &part)?;
        let mut sink = GtiffSink::new(ds, spec, part.clone()).writeback(true);
        copy(&[sj], &mut sink, y0)?;
        let adj = engine::ChunkSink::close(sink, o.metadata.clone())?;
        for (a, b) in adjusted.iter_mut().zip(adj) {
            a.clamped += b.clamped;
            a.moved_off_nodata += b.moved_off_nodata;
        }
        let rel = relative(&tif);
        sources.push((rel, y0, y1 - y0));
        staged_tifs.push((tif, staged));
    }
    let mut x = vrt_head(o);
    for (i, d) in o.band_descriptions.iter().enumerate() {
        x.push_str(&format!(
            "  <VRTRasterBand dataType=\"{}\" band=\"{}\">\n",
            o.out_type.gdal_name(),
            i + 1
        ));
        let a = adjusted[i];
        if a.clamped + a.moved_off_nodata > 0 {
            x.push_str(&format!(
                "    <Metadata><MDI key=\"BLOCKSUM_ADJUSTED_PIXELS\">{}</MDI></Metadata>\n",
                a.clamped + a.moved_off_nodata
            ));
        }
        if !d.is_empty() {
            x.push_str(&format!("    <Description>{}</Description>\n", xml(d)));
        }
        if let Some(nd) = o.nodata {
            x.push_str(&format!(
                "    <NoDataValue>{}</NoDataValue>\n",
                if nd.is_nan() {
                    "nan".to_string()
                } else {
                    format!("{nd:?}")
                }
            ));
        }
        for (src, y0, h) in &sources {
            x.push_str(&format!(
                "    <SimpleSource>\n      <SourceFilename relativeToVRT=\"1\">{}</SourceFilename>\n      <SourceBand>{}</SourceBand>\n      <SrcRect xOff=\"0\" yOff=\"0\" xSize=\"{w}\" ySize=\"{h}\"/>\n      <DstRect xOff=\"0\" yOff=\"{y0}\" xSize=\"{w}\" ySize=\"{h}\"/>\n    </SimpleSource>\n",
                xml(src),
                i + 1,
                w = o.width,
            ));
        }
        x.push_str("  </VRTRasterBand>\n");
    }
    x.push_str("</VRTDataset>\n");
    std::fs::write(tmp, x.as_bytes())
        .map_err(|e| CoordError::write_io(output, "writing the VRT", e))?;
    Ok(staged_tifs)
}

/// The VRT's opening: its size, SRS, geotransform and dataset metadata.
fn vrt_head(o: &journal::OutputHeader) -> String {
    let mut x = format!(
        "<VRTDataset rasterXSize=\"{}\" rasterYSize=\"{}\">\n",
        o.width, o.height
    );
    if !o.projection.is_empty() {
        x.push_str(&format!("  <SRS>{}</SRS>\n", xml(&o.projection)));
    }
    if let Some(g) = o.geo_transform {
        x.push_str(&format!(
            "  <GeoTransform>{:?}, {:?}, {:?}, {:?}, {:?}, {:?}</GeoTransform>\n",
            g[0], g[1], g[2], g[3], g[4], g[5]
        ));
    }
    // What GDAL's GTiff driver writes by default, so the VRT reads as the GeoTIFF does.
    x.push_str("  <Metadata>\n    <MDI key=\"AREA_OR_POINT\">Area</MDI>\n");
    for (k, v) in &o.metadata {
        x.push_str(&format!("    <MDI key=\"{}\">{}</MDI>\n", xml(k), xml(v)));
    }
    x.push_str("  </Metadata>\n");
    x
}

/// `tif`'s path relative to the VRT's directory (the shards' directory, OUTPUT.shards, is
/// beside OUTPUT).
fn relative(tif: &Path) -> String {
    let dir = tif
        .parent()
        .and_then(|d| d.file_name())
        .map(|d| d.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(
        "{dir}/{}",
        tif.file_name().unwrap_or_default().to_string_lossy()
    )
}
