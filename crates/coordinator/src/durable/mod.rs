//! What outlives a run: the chunk journal's format ([`journal`], `--resume`), the shards of a
//! plan ([`shard`], `--shard`) and their assembly into one output ([`merge`]).

pub mod journal;
pub mod merge;
pub mod shard;
