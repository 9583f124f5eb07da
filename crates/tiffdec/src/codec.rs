//! Decompressing one block into a buffer of exactly the decoded size: DEFLATE (zlib streams,
//! with libdeflate), ZSTD and LZW (with `weezl`). A stream that needs more room than the block holds is an error.

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

/// Whether an LZW block starts as libtiff tells old-style (pre-TIFF 5.0, LSB-first) codes:
/// a zero byte, then one whose lowest bit is set (a clear code written LSB-first).
pub fn is_old_lzw(head: &[u8]) -> bool {
    matches!(head, [0, b, ..] if b & 1 == 1)
}

/// A reusable TIFF LZW decoder (MSB-first codes, 8-bit literals, the TIFF "early change" of the
/// code width), which stops once the block is full, as libtiff does.
pub struct Unlzw(weezl::decode::Decoder);

impl Unlzw {
    pub fn new() -> Unlzw {
        Unlzw(
            weezl::decode::Configuration::with_tiff_size_switch(weezl::BitOrder::Msb, 8)
                .with_yield_on_full_buffer(true)
                .build(),
        )
    }

    /// Decodes the LZW stream in `src` into `out`; the number of bytes written.
    pub fn decode(&mut self, src: &[u8], out: &mut [u8]) -> Result<usize, String> {
        // libtiff also reads the pre-TIFF 5.0 ("old-style", LSB-first) variant, which starts
        // with these two bytes; GDAL never writes it. Left to GDAL: refused, not misread.
        if is_old_lzw(src) {
            return Err("old-style (pre-TIFF 5.0) LZW".into());
        }
        self.0.reset();
        let (mut inp, mut written) = (src, 0);
        while written < out.len() {
            let r = self.0.decode_bytes(inp, &mut out[written..]);
            inp = &inp[r.consumed_in..];
            written += r.consumed_out;
            match r.status {
                Ok(weezl::LzwStatus::Ok) => {}
                // The end code, or no input left: what was written is all there is.
                Ok(weezl::LzwStatus::Done | weezl::LzwStatus::NoProgress) => break,
                Err(e) => return Err(format!("corrupt LZW stream: {e}")),
            }
        }
        Ok(written)
    }
}
