//! The WASI preview 1 functions whose `wasmtime-wasi` versions run a tokio `block_on`
//! (file and poll operations), which panics on the data plane's tokio threads where guest
//! calls run. Plugins have no files: stdout and stderr go to the gateway log, every other
//! descriptor is `EBADF`; `poll_oneoff` returns at once (Go's `usleep` needs success, not
//! sleep), as Higress's host does. The linker lets these shadow `wasmtime-wasi`'s.

use super::logging::log;
use super::memory::{read, write, write_u32};

const SUCCESS: i32 = 0;
const BADF: i32 = 8;
const FAULT: i32 = 21;

host_fns! { "wasi_snapshot_preview1" -> i32;
    /// To stdout/stderr: the gateway log (stdout at info, stderr at error, one trailing
    /// newline dropped); other descriptors do not exist.
    fn fd_write(mut caller, fd: i32, iovs: i32, iovs_len: i32, nwritten: i32) {
        if fd != 1 && fd != 2 {
            return BADF;
        }
        let mut out = Vec::new();
        for i in 0..iovs_len.max(0) {
            let Ok(iov) = read(&caller, iovs + i * 8, 8) else {
                return FAULT;
            };
            let ptr = i32::from_le_bytes([iov[0], iov[1], iov[2], iov[3]]);
            let len = i32::from_le_bytes([iov[4], iov[5], iov[6], iov[7]]);
            match read(&caller, ptr, len) {
                Ok(b) => out.extend_from_slice(&b),
                Err(_) => return FAULT,
            }
        }
        let text = String::from_utf8_lossy(&out);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        if !text.is_empty() {
            log(&caller.data().plugin.name, if fd == 1 { 2 } else { 4 }, text);
        }
        match write_u32(&mut caller, nwritten, out.len() as u32) {
            Ok(()) => SUCCESS,
            Err(_) => FAULT,
        }
    }

    /// Stdin/stdout/stderr are character devices; nothing else exists.
    fn fd_fdstat_get(mut caller, fd: i32, buf: i32) {
        if !(0..=2).contains(&fd) {
            return BADF;
        }
        let mut stat = [0u8; 24];
        stat[0] = 2; // filetype: character device
        let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 }; // fd_read / fd_write
        stat[8..16].copy_from_slice(&rights.to_le_bytes());
        match write(&mut caller, buf, &stat) {
            Ok(()) => SUCCESS,
            Err(_) => FAULT,
        }
    }

    /// Every subscription is ready now (clocks without sleeping).
    fn poll_oneoff(mut caller, input: i32, output: i32, n: i32, nevents: i32) {
        for i in 0..n.max(0) {
            let Ok(sub) = read(&caller, input + i * 48, 48) else {
                return FAULT;
            };
            let mut ev = [0u8; 32];
            ev[0..8].copy_from_slice(&sub[0..8]); // userdata
            ev[10] = sub[8]; // event type = subscription tag
            if write(&mut caller, output + i * 32, &ev).is_err() {
                return FAULT;
            }
        }
        match write_u32(&mut caller, nevents, n.max(0) as u32) {
            Ok(()) => SUCCESS,
            Err(_) => FAULT,
        }
    }

    /// Stdin is empty.
    fn fd_read(_, fd: i32, _: i32, _: i32, _: i32) {
        if fd == 0 {
            SUCCESS
        } else {
            BADF
        }
    }

    fn fd_close(_, fd: i32) {
        if (0..=2).contains(&fd) {
            SUCCESS
        } else {
            BADF
        }
    }

    // No files: every other file operation is `EBADF`.
    fn fd_datasync(_, _: i32) {
        BADF
    }

    fn fd_sync(_, _: i32) {
        BADF
    }

    fn fd_filestat_get(_, _: i32, _: i32) {
        BADF
    }

    fn fd_renumber(_, _: i32, _: i32) {
        BADF
    }

    fn path_create_directory(_, _: i32, _: i32, _: i32) {
        BADF
    }

    fn path_remove_directory(_, _: i32, _: i32, _: i32) {
        BADF
    }

    fn path_unlink_file(_, _: i32, _: i32, _: i32) {
        BADF
    }

    fn fd_advise(_, _: i32, _: i64, _: i64, _: i32) {
        BADF
    }

    fn fd_filestat_set_size(_, _: i32, _: i64) {
        BADF
    }

    fn fd_filestat_set_times(_, _: i32, _: i64, _: i64, _: i32) {
        BADF
    }

    fn fd_pread(_, _: i32, _: i32, _: i32, _: i64, _: i32) {
        BADF
    }

    fn fd_pwrite(_, _: i32, _: i32, _: i32, _: i64, _: i32) {
        BADF
    }

    fn fd_seek(_, _: i32, _: i64, _: i32, _: i32) {
        BADF
    }

    fn fd_readdir(_, _: i32, _: i32, _: i32, _: i64, _: i32) {
        BADF
    }

    fn path_filestat_get(_, _: i32, _: i32, _: i32, _: i32, _: i32) {
        BADF
    }

    fn path_filestat_set_times(_, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32) {
        BADF
    }

    fn path_link(_, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32) {
        BADF
    }

    fn path_open(_, _: i32, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32, _: i32) {
        BADF
    }

    fn path_readlink(_, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32) {
        BADF
    }

    fn path_rename(_, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32) {
        BADF
    }

    fn path_symlink(_, _: i32, _: i32, _: i32, _: i32, _: i32) {
        BADF
    }
}
