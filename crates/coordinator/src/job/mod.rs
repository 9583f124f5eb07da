//! What a run computes, before anything runs: the input inspected ([`raster`]) and its band
//! metadata carried over ([`fidelity`]), the output grid (blocks of F or a target grid's
//! cells, [`grid`]), the chunk plan and its splits ([`plan`]), the memory arithmetic
//! ([`budget`]) and which decoder reads ([`decoder`]).

pub mod budget;
pub mod decoder;
pub mod fidelity;
pub mod grid;
pub mod plan;
pub mod raster;
