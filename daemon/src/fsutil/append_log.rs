//! An append-only JSON-lines file shared by processes: the file-level half
//! of the run store and the audit trail.
//!
//! Writers take an exclusive `flock`, readers a shared one, each on the
//! inode the path names: a compaction replaces the file by rename, and a
//! process that locked the old inode notices and reopens. A line is
//! appended with one `write` on an `O_APPEND` file and fsynced; a torn
//! last line (a crash mid-write) is cut off by the next append, unless it
//! is whole and only its newline was lost.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use super::{FILE_MODE, path_error, sync_parent};

/// How often open-lock-check is retried when compactions keep replacing
/// the file under us; each retry means another process made progress.
/// Bounded only so that a file system with unstable inode numbers cannot
/// spin forever.
const MAX_REOPENS: usize = 1000;

/// Appends `line` (newline-terminated) to `file`, opened and locked by
/// [`open_for_append`], and fsyncs it. A last line without its newline is
/// kept (given the newline) when `is_whole` says it parses, else cut off.
/// Returns the number of complete lines now in the file.
pub fn append_line(
    file: &File,
    path: &Path,
    line: &[u8],
    is_whole: impl Fn(&[u8]) -> bool,
) -> io::Result<u64> {
    let at = |action: &'static str| move |e: io::Error| path_error(e, action, path);
    let scan = scan_newlines(file).map_err(at("read"))?;
    let mut lines = scan.lines;
    let mut out = Vec::with_capacity(line.len() + 1);
    if scan.tail_start < scan.len {
        // The last line has no newline: a crash interrupted its write,
        // or (rarely) only the newline was lost.
        let tail = read_range(file, scan.tail_start, scan.len).map_err(at("read"))?;
        if is_whole(&tail) {
            out.push(b'\n');
            lines += 1;
        } else {
            tracing::warn!(
                "{}: dropping a torn last line ({} bytes) left by an interrupted write",
                path.display(),
                tail.len()
            );
            file.set_len(scan.tail_start).map_err(at("truncate"))?;
        }
    }
    out.extend_from_slice(line);
    let mut writer = file;
    writer.write_all(&out).map_err(at("append to"))?;
    file.sync_data().map_err(at("fsync"))?;
    Ok(lines + 1)
}

/// Opens the file for appending, creating it if needed, with the
/// exclusive lock held on the inode the path names.
pub fn open_for_append(path: &Path) -> io::Result<File> {
    for _ in 0..MAX_REOPENS {
        let mut options = OpenOptions::new();
        options.read(true).append(true);
        let (file, created) = match options.open(path) {
            Ok(file) => (file, false),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match options.create_new(true).mode(FILE_MODE).open(path) {
                    Ok(file) => (file, true),
                    // Another writer created it first; open theirs.
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                    Err(e) => return Err(path_error(e, "create", path)),
                }
            }
            Err(e) => return Err(path_error(e, "open", path)),
        };
        if created {
            // The umask may have narrowed the mode; make the new name durable.
            file.set_permissions(Permissions::from_mode(FILE_MODE))
                .map_err(|e| path_error(e, "chmod", path))?;
            sync_parent(path)?;
        }
        file.lock().map_err(|e| path_error(e, "lock", path))?;
        if names_inode(path, &file)? {
            return Ok(file);
        }
    }
    Err(path_error(replaced_error(), "open", path))
}

/// Opens the file for reading with a shared lock on the inode the path
/// names; `None` if there is no file yet.
pub fn open_for_read(path: &Path) -> io::Result<Option<File>> {
    for _ in 0..MAX_REOPENS {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(path_error(e, "open", path)),
        };
        file.lock_shared()
            .map_err(|e| path_error(e, "lock", path))?;
        if names_inode(path, &file)? {
            return Ok(Some(file));
        }
    }
    Err(path_error(replaced_error(), "open", path))
}

fn replaced_error() -> io::Error {
    io::Error::other("the file kept being replaced while opening it")
}

/// Whether `path` still names the inode `file` has open (a compaction
/// renames a new file over it).
fn names_inode(path: &Path, file: &File) -> io::Result<bool> {
    let open = file.metadata().map_err(|e| path_error(e, "stat", path))?;
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == open.dev() && now.ino() == open.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(path_error(e, "stat", path)),
    }
}

struct NewlineScan {
    /// Complete lines (newline-terminated).
    lines: u64,
    /// Offset just after the last newline: where a torn tail starts.
    tail_start: u64,
    len: u64,
}

fn scan_newlines(file: &File) -> io::Result<NewlineScan> {
    let mut reader = ReadAt { file, pos: 0 };
    let mut chunk = vec![0u8; 64 * 1024];
    let (mut lines, mut tail_start, mut len) = (0u64, 0u64, 0u64);
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for (i, b) in chunk[..n].iter().enumerate() {
            if *b == b'\n' {
                lines += 1;
                tail_start = len + i as u64 + 1;
            }
        }
        len += n as u64;
    }
    Ok(NewlineScan {
        lines,
        tail_start,
        len,
    })
}

fn read_range(file: &File, start: u64, end: u64) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut buf, start)?;
    Ok(buf)
}

/// Positional reads, so the append fd's offset does not matter.
struct ReadAt<'a> {
    file: &'a File,
    pos: u64,
}

impl Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read_at(buf, self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}
