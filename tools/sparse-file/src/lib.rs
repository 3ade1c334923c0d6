//! Large, mostly-zero files: a pre-initialised snapshot's memory image spans
//! the load's whole heap, and most of it is freed memory the plugin zeroed.
//! They are written with all-zero blocks left as holes (reads of a hole
//! return zeros, and it costs no disk), and their content digest (SHA-256)
//! reads only the data: holes count as the zeros they read as, so the digest does not
//! depend on where the filesystem put holes.
//!
//! A crate of its own so that it is optimised in dev builds too (the
//! workspace optimises dependencies, not its own members' code): the hashing
//! is inlined into its caller, and the tests and benchmarks run dev builds.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

/// Granularity of the holes `write_sparse` leaves.
pub const BLOCK: usize = 64 << 10;

/// Writes `bytes` at the start of `file` (empty, freshly created), leaving
/// every all-zero `BLOCK` as a hole; the file ends up `bytes.len()` long.
pub fn write_sparse(file: &mut File, bytes: &[u8]) -> std::io::Result<()> {
    for block in bytes.chunks(BLOCK) {
        if block.iter().all(|b| *b == 0) {
            file.seek(SeekFrom::Current(block.len() as i64))?;
        } else {
            file.write_all(block)?;
        }
    }
    file.set_len(bytes.len() as u64)
}

/// Granularity of `digest`: each chunk of the file is hashed on its own.
const CHUNK: usize = 1 << 20;

/// `"<len> <sha256 hex>"` of the file's content: the SHA-256 of the file's
/// length and of the SHA-256 of each `CHUNK` of it, in order (a hash list:
/// changing any byte means finding a SHA-256 second preimage). A chunk that
/// lies in a hole is known to be zeros and is not read; the others are
/// hashed from a mapping of the file, without a copy, on every core. That
/// keeps checking a snapshot of RoBERTa-base's whole heap (1.6 GB apparent,
/// ~570 MB of data) within a fraction of a second at every start. The file
/// must not be truncated while it is hashed (the host only ever renames and
/// unlinks these files).
pub fn digest(path: &Path) -> std::io::Result<String> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let ranges = data_ranges(&file, len);
    // SAFETY: read-only mapping of a file nobody truncates (see above).
    let map = if len == 0 { None } else { Some(unsafe { memmap2::Mmap::map(&file)? }) };
    let bytes: &[u8] = map.as_deref().unwrap_or(&[]);
    let in_a_hole = |start: u64, end: u64| {
        // The first range ending after `start` is the only one that can overlap.
        let i = ranges.partition_point(|(_, e)| *e <= start);
        !ranges.get(i).is_some_and(|(s, _)| *s < end)
    };
    Ok(chunked_digest(bytes, in_a_hole))
}

/// What `digest` gives for a file holding `bytes`, computed from memory (a
/// file about to be written, or one read whole).
pub fn digest_bytes(bytes: &[u8]) -> String {
    chunked_digest(bytes, |_, _| false)
}

/// The digest over `bytes`; `in_a_hole(start, end)` says a full chunk is
/// known to be zeros, so it is not read.
fn chunked_digest(bytes: &[u8], in_a_hole: impl Fn(u64, u64) -> bool + Sync) -> String {
    use rayon::prelude::*;
    let zero_chunk = Sha256::digest(vec![0u8; CHUNK]);
    let hashes: Vec<_> = bytes
        .par_chunks(CHUNK)
        .enumerate()
        .map(|(i, chunk)| {
            let (start, end) = ((i * CHUNK) as u64, (i * CHUNK + chunk.len()) as u64);
            if chunk.len() == CHUNK && in_a_hole(start, end) { zero_chunk } else { Sha256::digest(chunk) }
        })
        .collect();
    let mut h = Sha256::new();
    h.update((bytes.len() as u64).to_le_bytes());
    for hash in &hashes {
        h.update(hash);
    }
    let out: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    format!("{} {out}", bytes.len())
}

/// The ranges of `file` that hold data (`SEEK_DATA`/`SEEK_HOLE`); the whole
/// file where the filesystem cannot tell.
fn data_ranges(file: &File, len: u64) -> Vec<(u64, u64)> {
    use rustix::fs::{seek, SeekFrom as At};
    let whole = vec![(0, len)];
    let mut ranges = Vec::new();
    let mut at = 0u64;
    while at < len {
        let start = match seek(file, At::Data(at)) {
            Ok(start) => start.min(len),
            // No data after `at`.
            Err(rustix::io::Errno::NXIO) => break,
            Err(_) => return whole,
        };
        let end = match seek(file, At::Hole(start)) {
            Ok(end) => end.min(len),
            Err(_) => return whole,
        };
        if end <= start {
            return whole;
        }
        ranges.push((start, end));
        at = end;
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn holes_hash_as_the_zeros_they_read_as_and_every_byte_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = vec![0u8; 5 << 20];
        content[(1 << 20)..(1 << 20) + 100_000].fill(0xab);
        let n = content.len();
        content[n - 10..].fill(7);
        let (dense, sparse) = (dir.path().join("dense"), dir.path().join("sparse"));
        std::fs::write(&dense, &content).unwrap();
        write_sparse(&mut File::create(&sparse).unwrap(), &content).unwrap();
        assert_eq!(std::fs::read(&sparse).unwrap(), content, "the sparse file reads back the same");
        assert!(std::fs::metadata(&sparse).unwrap().blocks() * 512 < n as u64 / 2, "zero blocks were left as holes");
        let d = digest(&dense).unwrap();
        assert_eq!(d, digest(&sparse).unwrap());
        assert_eq!(d, digest_bytes(&content), "the digest from memory is the file's");
        assert!(d.starts_with(&format!("{n} ")));
        // One byte changed where the sparse copy has a hole; one byte cut off.
        content[3 << 20] = 1;
        std::fs::write(&dense, &content).unwrap();
        assert_ne!(d, digest(&dense).unwrap());
        std::fs::write(&dense, &content[..n - 1]).unwrap();
        assert_ne!(d, digest(&dense).unwrap());
    }

    #[test]
    fn a_file_of_zeros_only_is_all_hole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("z");
        write_sparse(&mut File::create(&path).unwrap(), &vec![0u8; 3 * BLOCK + 17]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * BLOCK as u64 + 17);
        let zeros = dir.path().join("z2");
        std::fs::write(&zeros, vec![0u8; 3 * BLOCK + 17]).unwrap();
        assert_eq!(digest(&path).unwrap(), digest(&zeros).unwrap());
        let empty = dir.path().join("empty");
        std::fs::write(&empty, b"").unwrap();
        assert!(digest(&empty).unwrap().starts_with("0 "));
    }
}
