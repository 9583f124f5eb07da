//! Decompressing one block into a buffer of exactly the decoded size: DEFLATE (zlib streams,
//! with libdeflate) and ZSTD. A stream that needs more room than the block holds is an error.

use libdeflater::{DecompressionError, Decompressor};

/// A reusable zlib-stream inflater.
pub struct Inflater(Decompressor);

impl Inflater {
    pub fn new() -> Inflater {
        Inflater(Decompressor::new())
    }

    /// Inflates `src` into `out`; the number of bytes written.
    pub fn inflate(&mut self, src: &[u8], out: &mut [u8]) -> Result<usize, String> {
        self.0.zlib_decompress(src, out).map_err(|e| match e {
            DecompressionError::BadData => "corrupt DEFLATE stream".to_string(),
            DecompressionError::InsufficientSpace => {
                format!("DEFLATE stream inflates past {} bytes", out.len())
            }
        })
    }
}

/// Decompresses the ZSTD frame(s) in `src` into `out`; the number of bytes written.
pub fn unzstd(src: &[u8], out: &mut [u8]) -> Result<usize, String> {
    zstd::bulk::decompress_to_buffer(src, out).map_err(|e| format!("ZSTD: {e}"))
}
