//! Commands beside the job: the dispatch benchmark ([`bench`](mod@bench), a second job), the
//! writer alone ([`bench_writer`]) and the demo raster ([`synth`]).

pub mod bench;
pub mod bench_writer;
pub mod synth;
