//! Memory arithmetic: how many workers fit, each worker's hard limit and GDAL block cache,
//! and whether the whole run fits in the machine's available memory. Pure functions: the
//! caller passes what it measured.

use crate::error::CoordError;

const MIB: u64 = 1 << 20;
/// A worker's private memory besides its GDAL block cache (libgdal's data, allocator, stack).
pub const WORKER_BASE: u64 = 48 * MIB;
/// The smallest hard limit a worker can do anything under.
pub const MIN_WORKER_LIMIT: u64 = WORKER_BASE + 16 * MIB;
/// What `--workers auto` budgets per worker at least.
pub const AUTO_WORKER_MIN: u64 = 256 * MIB;
/// The coordinator's own memory besides its block cache and the ring.
pub const COORDINATOR_BASE: u64 = 64 * MIB;

#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MemoryPlan {
    /// Workers busy at once.
    pub workers: u32,
    /// Warm spare processes beside them (each under the same limit).
    pub spares: u32,
    /// Hard per-worker limit (RLIMIT_DATA); `None` with no workers.
    pub limit: Option<u64>,
    /// Whether the limit was derived (no `--memory-limit-per-worker`).
    pub limit_is_auto: bool,
    pub soft: Option<u64>,
    /// Per-worker GDAL block cache (part of the limit).
    pub gdal_cache: u64,
    /// The shared slot ring.
    pub ring: u64,
    /// Expected peak of the coordinator: base + its block cache + the ring.
    pub coordinator: u64,
    /// Expected peak of the whole run.
    pub total: u64,
    pub available: u64,
}

fn mib(b: u64) -> String {
    if b >= 10 << 30 {
        format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.0} MiB", b as f64 / MIB as f64)
    }
}

/// The GDAL block cache a worker with hard limit `limit` gets: a quarter of what is left
/// after the base, between 8 and 64 MiB (whole-block-row reads need little cache).
pub fn gdal_cache_for(limit: u64) -> u64 {
    (limit.saturating_sub(WORKER_BASE) / 4).clamp(8 * MIB, 64 * MIB)
}

/// The workers a run asks for.
#[derive(Debug, Clone, Copy)]
pub struct Asked {
    /// Busy workers (0: in process only).
    pub workers: u32,
    /// Warm spares beside them.
    pub spares: u32,
    /// `--workers auto`: memory may lower `workers`.
    pub auto: bool,
}

/// Plans memory. `ring(workers)` is the ring's size for a worker count; `coordinator_cache`
/// the coordinator's block cache.
pub fn plan_memory(
    available: u64,
    asked: Asked,
    limit: Option<u64>,
    soft_fraction: f64,
    coordinator_cache: u64,
    ring: impl Fn(u32) -> u64,
) -> Result<MemoryPlan, CoordError> {
    let plan = |spares| {
        let asked = Asked { spares, ..asked };
        plan_with(
            available,
            asked,
            limit,
            soft_fraction,
            coordinator_cache,
            &ring,
        )
    };
    let spares = asked.spares;
    // Spares are a comfort, not a need: drop them before refusing the run.
    let p = match plan(spares) {
        Err(e) if spares > 0 => plan(0).map_err(|_| e)?,
        other => other?,
    };
    if p.workers > 0 && p.spares < spares {
        tracing::warn!(
            "no memory for {} warm spare worker(s): running with {} (--spare-workers {})",
            spares,
            p.spares,
            p.spares
        );
    }
    Ok(p)
}

fn plan_with(
    available: u64,
    asked: Asked,
    limit: Option<u64>,
    soft_fraction: f64,
    coordinator_cache: u64,
    ring: &impl Fn(u32) -> u64,
) -> Result<MemoryPlan, CoordError> {
    let coordinator_fixed = COORDINATOR_BASE + coordinator_cache;
    let mut workers = asked.workers;
    let mut spares = asked.spares;
    if workers > 0 && asked.auto {
        // As many as the CPUs allow, and as memory allows at AUTO_WORKER_MIN (or the limit asked for) each.
        let per = limit
            .unwrap_or(AUTO_WORKER_MIN)
            .max(AUTO_WORKER_MIN.min(limit.unwrap_or(u64::MAX)));
        let spare = (available as f64 * 0.8) as u64;
        // Spares go first, then busy workers, down to one.
        while ring(workers) + coordinator_fixed + (workers + spares) as u64 * per > spare {
            if spares > 0 {
                spares = 0;
            } else if workers > 1 {
                workers -= 1;
            } else {
                break;
            }
        }
    }
    let ring_bytes = ring(workers);
    let coordinator = coordinator_fixed + ring_bytes;
    if workers == 0 {
        return Ok(MemoryPlan {
            workers,
            spares: 0,
            limit: None,
            limit_is_auto: false,
            soft: None,
            gdal_cache: 0,
            ring: ring_bytes,
            coordinator,
            total: coordinator,
            available,
        });
    }
    let (limit, auto) = match limit {
        Some(l) => (l, false),
        None => {
            let spare =
                ((available as f64 * 0.8) as u64).saturating_sub(ring_bytes + coordinator_fixed);
            (
                (spare / (workers + spares) as u64).max(MIN_WORKER_LIMIT),
                true,
            )
        }
    };
    if limit < MIN_WORKER_LIMIT {
        return Err(CoordError::Resources(format!(
            "--memory-limit-per-worker {} is too small: a worker needs at least {}",
            mib(limit),
            mib(MIN_WORKER_LIMIT)
        )));
    }
    let processes = workers + spares;
    let total = processes as u64 * limit + coordinator;
    if total > available {
        return Err(CoordError::Resources(format!(
            "memory limits do not fit: {processes} worker process(es) x {} + slot ring {} + coordinator {} = {}, but {} is available{}",
            mib(limit),
            mib(ring_bytes),
            mib(coordinator_fixed),
            mib(total),
            mib(available),
            if auto { "" } else { " (lower --memory-limit-per-worker or --workers)" }
        )));
    }
    Ok(MemoryPlan {
        workers,
        spares,
        limit: Some(limit),
        limit_is_auto: auto,
        soft: Some((limit as f64 * soft_fraction) as u64),
        gdal_cache: gdal_cache_for(limit),
        ring: ring_bytes,
        coordinator,
        total,
        available,
    })
}

impl MemoryPlan {
    pub fn describe(&self) -> String {
        let mut s = String::new();
        if self.workers == 0 {
            s.push_str(&format!(
                "memory       in process: coordinator ~{} (ring {}), {} available\n",
                mib(self.coordinator),
                mib(self.ring),
                mib(self.available)
            ));
            return s;
        }
        let limit = self.limit.unwrap_or(0);
        s.push_str(&format!(
            "memory       {} available; {} worker process(es) ({} busy at most + {} warm spare); per worker: hard limit {}{} (GDAL cache {} + working {}), recycled above {} private\n",
            mib(self.available),
            self.workers + self.spares,
            self.workers,
            self.spares,
            mib(limit),
            if self.limit_is_auto { " (auto: (80 % of available - ring - coordinator) / processes)" } else { "" },
            mib(self.gdal_cache),
            mib(limit - self.gdal_cache),
            mib(self.soft.unwrap_or(0)),
        ));
        s.push_str(&format!(
            "             coordinator ~{} (ring {} + cache and base {}); whole run at most {}\n",
            mib(self.coordinator),
            mib(self.ring),
            mib(self.coordinator - self.ring),
            mib(self.total)
        ));
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn auto_limit_splits_eighty_percent() {
        let p = plan_memory(
            10 * GIB,
            Asked {
                workers: 4,
                spares: 0,
                auto: false,
            },
            None,
            0.8,
            16 * MIB,
            |w| w as u64 * 20 * MIB,
        )
        .unwrap();
        let spare = (10.0 * GIB as f64 * 0.8) as u64 - 80 * MIB - (COORDINATOR_BASE + 16 * MIB);
        assert_eq!(p.limit, Some(spare / 4));
        assert!(p.total <= 10 * GIB);
        assert_eq!(p.gdal_cache, 64 * MIB);
    }

    #[test]
    fn limits_that_do_not_fit_are_refused() {
        let e = plan_memory(
            4 * GIB,
            Asked {
                workers: 8,
                spares: 1,
                auto: false,
            },
            Some(GIB),
            0.8,
            16 * MIB,
            |_| 100 * MIB,
        )
        .unwrap_err();
        assert!(e.to_string().contains("do not fit"), "{e}");
        let e = plan_memory(
            4 * GIB,
            Asked {
                workers: 1,
                spares: 1,
                auto: false,
            },
            Some(10 * MIB),
            0.8,
            16 * MIB,
            |_| MIB,
        )
        .unwrap_err();
        assert!(e.to_string().contains("too small"), "{e}");
    }

    #[test]
    fn spares_are_dropped_before_a_run_is_refused_or_shrunk() {
        // Fits with one worker but not with a spare beside it.
        let p = plan_memory(
            300 * MIB,
            Asked {
                workers: 1,
                spares: 1,
                auto: false,
            },
            Some(128 * MIB),
            0.8,
            16 * MIB,
            |_| MIB,
        )
        .unwrap();
        assert_eq!((p.workers, p.spares), (1, 0));
        // Auto: the spare goes before a busy worker does.
        let q = plan_memory(
            2 * GIB,
            Asked {
                workers: 4,
                spares: 1,
                auto: true,
            },
            None,
            0.8,
            16 * MIB,
            |w| w as u64 * 16 * MIB,
        )
        .unwrap();
        let r = plan_memory(
            2 * GIB,
            Asked {
                workers: 4,
                spares: 0,
                auto: true,
            },
            None,
            0.8,
            16 * MIB,
            |w| w as u64 * 16 * MIB,
        )
        .unwrap();
        assert_eq!(q.workers, r.workers, "{q:?} vs {r:?}");
    }

    #[test]
    fn auto_workers_shrink_to_what_memory_allows() {
        // 2 GiB available: 0.8 * 2 GiB = 1.6 GiB; 256 MiB per worker plus ring and coordinator.
        let p = plan_memory(
            2 * GIB,
            Asked {
                workers: 31,
                spares: 1,
                auto: true,
            },
            None,
            0.8,
            16 * MIB,
            |w| w as u64 * 16 * MIB,
        )
        .unwrap();
        assert!(p.workers >= 1 && p.workers < 31, "{}", p.workers);
        assert!(p.total <= 2 * GIB);
        // Never below one worker.
        let q = plan_memory(
            200 * MIB,
            Asked {
                workers: 7,
                spares: 0,
                auto: true,
            },
            None,
            0.8,
            16 * MIB,
            |_| MIB,
        )
        .unwrap();
        assert_eq!(q.workers, 1);
    }
}
