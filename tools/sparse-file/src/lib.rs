//! Large, mostly-zero files: a pre-initialised snapshot's memory image spans
//! the load's whole heap, and most of it is freed memory the plugin zeroed.
//! They are written with all-zero blocks left as holes (reads of a hole
//! return zeros, and it costs no disk), and their content digest reads only
//! the data: holes are hashed as the zeros they read as, so the digest does
//! not depend on where the filesystem put holes.
//!
//! A crate of its own so that it is optimised in dev builds too (the
//! workspace optimises dependencies, not its own members' code): the hashing
//! is inlined into its caller, and the tests and benchmarks run dev builds.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

use twox_hash::XxHash3_128;

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

/// `"<len> <xxh3-128 hex>"` of the file's content. It guards against a torn
/// or damaged file, not against someone who can write next to it.
pub fn digest(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // One sequential pass over what is on disk (a cold page cache is the slow case).
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::Sequential);
    let mut h = XxHash3_128::new();
    let mut buf = vec![0u8; 8 << 20];
    let zeros = vec![0u8; 8 << 20];
    let mut at = 0u64;
    for (start, end) in data_ranges(&file, len) {
        feed_zeros(&mut h, &zeros, start - at);
        file.seek(SeekFrom::Start(start))?;
        let mut left = end - start;
        while left > 0 {
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the file shrank while it was read"));
            }
            h.write(&buf[..n]);
            left -= n as u64;
        }
        at = end;
    }
    feed_zeros(&mut h, &zeros, len - at);
    Ok(format!("{len} {:032x}", h.finish_128()))
}

fn feed_zeros(h: &mut XxHash3_128, zeros: &[u8], mut n: u64) {
    while n > 0 {
        let k = zeros.len().min(usize::try_from(n).unwrap_or(usize::MAX));
        h.write(&zeros[..k]);
        n -= k as u64;
    }
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
    }
}
