//! The listening sockets: created with their final permissions, never taking over a path a
//! live server still listens on, but replacing a stale socket file left by an earlier run.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

/// Whether a server listens on the socket file at `path`. The connect is non-blocking: a live
/// server that is not accepting (its backlog full, or stopped) makes a blocking connect wait
/// for good, and this runs where the host's signals are already blocked.
fn someone_listens(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let bytes = path.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() {
        return false; // bind will report the name as too long
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: socket() takes no pointers; the descriptor is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        )
    };
    if fd < 0 {
        return true; // cannot tell: never take the path
    }
    // SAFETY: addr is a valid sockaddr_un and the length given is its size.
    let rc = unsafe {
        libc::connect(
            fd,
            (&addr as *const libc::sockaddr_un).cast(),
            std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
        )
    };
    let error = std::io::Error::last_os_error().raw_os_error();
    // SAFETY: fd is ours and still open.
    unsafe { libc::close(fd) };
    // Connected, or refused only because the backlog is full (EAGAIN): a server is there.
    // ECONNREFUSED: the file is stale.
    rc == 0 || error != Some(libc::ECONNREFUSED)
}

fn bind(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    // A socket file left by an earlier run would make bind fail: remove it, but only if it is
    // a socket nobody listens on (never take a live server's path).
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        use std::os::unix::fs::FileTypeExt;
        if meta.file_type().is_socket() {
            if someone_listens(path) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "a server is already listening there",
                ));
            }
            std::fs::remove_file(path)?;
        }
    }
    // Create the socket file with its final permissions: no moment with the default ones.
    // SAFETY: umask only changes this process's file-creation mask; it is restored at once.
    let old_mask = unsafe { libc::umask(!mode & 0o777) };
    let bound = UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old_mask) };
    let listener = bound?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// A listening socket and whether its clients are read-only.
pub(super) type Listener = (UnixListener, bool);

/// Binds the read-write socket and, if asked, the read-only one. Returns the listeners and
/// the socket files to remove at the end; on failure leaves no file behind.
pub(super) fn listen(
    socket: &Path,
    readonly_socket: Option<&Path>,
    mode: u32,
) -> Result<(Vec<Listener>, Vec<PathBuf>), String> {
    let name = |p: &Path| p.display().to_string();
    let rw = bind(socket, mode).map_err(|e| format!("{}: {e}", name(socket)))?;
    let mut listeners = vec![(rw, false)];
    let mut files = vec![socket.to_path_buf()];
    if let Some(ro) = readonly_socket {
        match bind(ro, mode) {
            Ok(listener) => listeners.push((listener, true)),
            Err(e) => {
                // The read-write socket was created just now: take it away again.
                let _ = std::fs::remove_file(socket);
                return Err(format!("{}: {e}", name(ro)));
            }
        }
        files.push(ro.to_path_buf());
    }
    Ok((listeners, files))
}

/// The socket files this server made, by identity (device and inode), so it can tell when
/// someone removes or replaces one while it runs, and so that at the end it removes only its
/// own. Connected clients never depend on the file; new ones cannot connect without it.
pub(super) struct SocketFiles {
    files: Vec<SocketFile>,
}

struct SocketFile {
    path: PathBuf,
    identity: Option<(u64, u64)>,
    reported: bool,
}

fn identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|meta| (meta.dev(), meta.ino()))
}

impl SocketFiles {
    pub(super) fn new(paths: Vec<PathBuf>) -> SocketFiles {
        let files = paths
            .into_iter()
            .map(|path| SocketFile {
                identity: identity(&path),
                path,
                reported: false,
            })
            .collect();
        SocketFiles { files }
    }

    /// Logs, once per file, a socket file that is gone or is no longer ours.
    pub(super) fn check(&mut self) {
        for file in &mut self.files {
            if !file.reported && identity(&file.path) != file.identity {
                file.reported = true;
                log::warn!(
                    "management socket {} was removed or replaced: connected clients keep \
                     working, new ones cannot reach this VMM (restart it to listen again)",
                    file.path.display()
                );
            }
        }
    }

    /// Removes the files that are still ours.
    pub(super) fn remove(&self) {
        for file in &self.files {
            if file.identity.is_some() && identity(&file.path) == file.identity {
                let _ = std::fs::remove_file(&file.path);
            }
        }
    }
}
