//! The file worker: uploads are written to disk as their bytes arrive, and downloads are
//! read from disk a piece at a time, on this thread, so that no file is ever held whole
//! in memory and a slow disk never stalls the reactor. Files live in a directory beside
//! the database, each under its id; an upload is written to `ID.part` and renamed once
//! complete and synced.

use crate::id::ConnId;
pub use crate::store::FileError;
use crate::store::{Completion, Notifier, Outcome, ReplyTo, Via};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender};
use std::thread::JoinHandle;

/// Uploads are refused (507) when the disk would have less than this free after them.
pub const MIN_FREE_DISK_BYTES: u64 = 1 << 30;

#[derive(Debug)]
pub enum FileJob {
    /// An upload of `size` bytes starts: its bytes follow as `Data`, then `End`.
    Begin {
        conn: ConnId,
        id: String,
        size: u64,
    },
    Data {
        conn: ConnId,
        bytes: Vec<u8>,
    },
    End {
        conn: ConnId,
    },
    /// The uploader went away: the partial file goes.
    Abort {
        conn: ConnId,
    },
    /// Up to `len` bytes of file `id` from `offset`.
    Read {
        conn: ConnId,
        id: String,
        offset: u64,
        len: usize,
    },
    Delete {
        ids: Vec<String>,
    },
}

struct Upload {
    id: String,
    file: File,
    hasher: ring::digest::Context,
}

/// The directory of the files of database `db`: `chat.db` keeps them in `chat.db.files/`.
pub fn dir_for(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".files");
    db.with_file_name(name)
}

pub fn start(dir: PathBuf, notify: Notifier) -> Result<(Sender<FileJob>, JoinHandle<()>), String> {
    std::fs::create_dir_all(&dir).map_err(|e| format!("files directory {dir:?}: {e}"))?;
    // Parts of uploads cut short by a crash are never finished.
    if let Ok(entries) = std::fs::read_dir(&dir) {
        for e in entries.flatten() {
            if e.path().extension().is_some_and(|x| x == "part") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = std::thread::Builder::new()
        .name("files".into())
        .spawn(move || run(&dir, rx, notify))
        .map_err(|e| e.to_string())?;
    Ok((tx, handle))
}

fn run(dir: &Path, rx: Receiver<FileJob>, notify: Notifier) {
    let mut uploads: HashMap<ConnId, Upload> = HashMap::new();
    let answer = |conn: ConnId, outcome: Outcome| {
        let reply = Some(ReplyTo {
            conn,
            via: Via::Http,
        });
        notify.send(Completion { reply, outcome })
    };
    while let Ok(job) = rx.recv() {
        let alive = match job {
            FileJob::Begin { conn, id, size } => match begin(dir, &id, size) {
                Ok(file) => {
                    let hasher = ring::digest::Context::new(&ring::digest::SHA256);
                    uploads.insert(conn, Upload { id, file, hasher });
                    true
                }
                Err(e) => answer(conn, Outcome::Uploaded { id, result: Err(e) }),
            },
            FileJob::Data { conn, bytes } => match uploads.get_mut(&conn) {
                // Dropped after a failure (already answered).
                None => true,
                Some(up) => match up.file.write_all(&bytes) {
                    Ok(()) => {
                        up.hasher.update(&bytes);
                        answer(conn, Outcome::UploadAck(bytes.len()))
                    }
                    Err(e) => {
                        log::warn!("upload write failed: {e}");
                        let up = uploads.remove(&conn).expect("present");
                        let _ = std::fs::remove_file(part(dir, &up.id));
                        let result = Err(no_space_or_io(&e));
                        answer(conn, Outcome::Uploaded { id: up.id, result })
                    }
                },
            },
            FileJob::End { conn } => match uploads.remove(&conn) {
                None => true,
                Some(up) => {
                    let result = finish(dir, up.file, &up.id).map(|()| {
                        let digest = up.hasher.finish();
                        digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
                    });
                    answer(conn, Outcome::Uploaded { id: up.id, result })
                }
            },
            FileJob::Abort { conn } => {
                if let Some(up) = uploads.remove(&conn) {
                    let _ = std::fs::remove_file(part(dir, &up.id));
                }
                true
            }
            FileJob::Read {
                conn,
                id,
                offset,
                len,
            } => answer(conn, Outcome::FileChunk(read_at(dir, &id, offset, len))),
            FileJob::Delete { ids } => {
                for id in ids {
                    if let Err(e) = std::fs::remove_file(dir.join(&id)) {
                        log::warn!("could not delete file {id}: {e}");
                    }
                }
                true
            }
        };
        if !alive {
            break;
        }
    }
    for up in uploads.into_values() {
        let _ = std::fs::remove_file(part(dir, &up.id));
    }
}

fn part(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.part"))
}

fn begin(dir: &Path, id: &str, size: u64) -> Result<File, FileError> {
    if free_bytes(dir).is_some_and(|free| free < size.saturating_add(MIN_FREE_DISK_BYTES)) {
        return Err(FileError::NoSpace);
    }
    File::create(part(dir, id)).map_err(|e| no_space_or_io(&e))
}

fn finish(dir: &Path, mut file: File, id: &str) -> Result<(), FileError> {
    let r = file
        .flush()
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::rename(part(dir, id), dir.join(id)));
    r.map_err(|e| {
        let _ = std::fs::remove_file(part(dir, id));
        no_space_or_io(&e)
    })
}

fn read_at(dir: &Path, id: &str, offset: u64, len: usize) -> Result<Vec<u8>, FileError> {
    let io = |e: std::io::Error| {
        log::warn!("reading file {id}: {e}");
        FileError::Io
    };
    let mut f = File::open(dir.join(id)).map_err(io)?;
    f.seek(SeekFrom::Start(offset)).map_err(io)?;
    let mut buf = Vec::with_capacity(len);
    f.take(len as u64).read_to_end(&mut buf).map_err(io)?;
    Ok(buf)
}

fn no_space_or_io(e: &std::io::Error) -> FileError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) | Some(libc::EFBIG) => FileError::NoSpace,
        _ => FileError::Io,
    }
}

/// Bytes free for this process in the file system holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    // SAFETY: statvfs fills the struct we hand it and reads only the C string.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(path.as_ptr(), &mut st) };
    (rc == 0).then(|| st.f_bavail as u64 * st.f_frsize as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_sit_beside_the_database() {
        assert_eq!(
            dir_for(Path::new("/data/chat.db")),
            PathBuf::from("/data/chat.db.files")
        );
        assert_eq!(
            dir_for(Path::new("chat.db")),
            PathBuf::from("chat.db.files")
        );
    }

    #[test]
    fn reads_are_bounded_and_positioned() {
        let dir = std::env::temp_dir().join(format!("cb-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("f1"), b"0123456789").unwrap();
        assert_eq!(read_at(&dir, "f1", 3, 4).unwrap(), b"3456");
        assert_eq!(read_at(&dir, "f1", 8, 64).unwrap(), b"89");
        assert_eq!(read_at(&dir, "nope", 0, 4), Err(FileError::Io));
        assert!(free_bytes(&dir).is_some_and(|b| b > 0));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
