//! A `wasm` module's file descriptors, Axon's own: stdin (0) is the request, stdout (1) the
//! answer, bounded, and stderr (2) is discarded; there is no other descriptor, so every
//! call on a path or on another descriptor answers `badf`.
//!
//! These take the place of WASI preview 1's descriptor calls, which drive an async
//! runtime of their own for each call (and so cannot run on a thread that is already
//! running one, as an actor's is): with Axon's own, a module runs on its caller's thread,
//! whatever that thread is, with no hand-over to another. Everything else the module sees
//! (clocks, randomness, `proc_exit`) stays WASI's.
//!
//! Must never: let a module reach a file, or write past the stdout bound (the bytes past
//! it are dropped and the call fails).

use wasmtime::{Caller, Linker, Memory};

const ERRNO_SUCCESS: i32 = 0;
const ERRNO_BADF: i32 = 8;
const ERRNO_FAULT: i32 = 21;
const ERRNO_INVAL: i32 = 28;
const ERRNO_SPIPE: i32 = 70;

/// The most iovecs one read or write takes (POSIX's usual `IOV_MAX`): a call's host work
/// stays bounded, since fuel and the watchdog only count the module's own code.
const MAX_IOVECS: u32 = 1024;

/// WASI's `rights::fd_read` and `rights::fd_write`.
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;

/// One call's standard streams.
pub(crate) struct Stdio {
    stdin: Vec<u8>,
    /// How much of stdin the module has read.
    read: usize,
    stdout: Vec<u8>,
    max_stdout: usize,
    /// Whether the module wrote past the stdout bound.
    overflowed: bool,
    /// Descriptors 0, 1 and 2 the module has closed.
    closed: [bool; 3],
}

impl Stdio {
    pub(crate) fn new(stdin: Vec<u8>, max_stdout: usize) -> Self {
        Self {
            stdin,
            read: 0,
            stdout: Vec::new(),
            max_stdout,
            overflowed: false,
            closed: [false; 3],
        }
    }

    /// What the module wrote to stdout, and whether it wrote more than the bound.
    pub(crate) fn into_stdout(self) -> (Vec<u8>, bool) {
        (self.stdout, self.overflowed)
    }

    fn open(&self, fd: i32) -> bool {
        usize::try_from(fd)
            .ok()
            .and_then(|fd| self.closed.get(fd))
            .is_some_and(|closed| !closed)
    }

    fn write(&mut self, bytes: &[u8]) {
        let room = self.max_stdout - self.stdout.len();
        if bytes.len() > room {
            self.overflowed = true;
        }
        self.stdout
            .extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

/// What a store's data gives these calls.
pub(crate) trait HasStdio {
    fn stdio(&mut self) -> &mut Stdio;
}

/// The module's memory, which every descriptor call reads its arguments from.
fn memory<T>(caller: &mut Caller<'_, T>) -> wasmtime::Result<Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("the module exports no memory"))
}

fn u32_at(data: &[u8], at: u32) -> Option<u32> {
    let at = at as usize;
    let b = data.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(b.try_into().ok()?))
}

/// Whether a `u32` fits at `at`.
fn fits_u32(data: &[u8], at: u32) -> bool {
    (at as usize)
        .checked_add(4)
        .is_some_and(|end| end <= data.len())
}

fn put_u32(data: &mut [u8], at: u32, v: u32) -> bool {
    let at = at as usize;
    match at.checked_add(4).and_then(|end| data.get_mut(at..end)) {
        Some(b) => {
            b.copy_from_slice(&v.to_le_bytes());
            true
        }
        None => false,
    }
}

/// The `(pointer, length)` pairs of the iovec array at `iovs`, or `None` when any is out
/// of the module's memory.
fn iovecs(data: &[u8], iovs: u32, count: u32) -> Option<Vec<(usize, usize)>> {
    (0..count)
        .map(|i| {
            let at = iovs.checked_add(i.checked_mul(8)?)?;
            let (ptr, len) = (
                u32_at(data, at)? as usize,
                u32_at(data, at.checked_add(4)?)? as usize,
            );
            data.get(ptr..ptr.checked_add(len)?)?;
            Some((ptr, len))
        })
        .collect()
}

/// The one shape of `fd_write` and `fd_read` on descriptor `fd`, one of `fds`: the
/// iovecs and the place of the count are checked before anything moves (a fault moves
/// nothing), then `each` moves the bytes of one iovec `(ptr, len)` and answers how many,
/// and their total is written at `done`.
fn through_iovecs<T: HasStdio>(
    mut caller: Caller<'_, T>,
    fds: &[i32],
    (fd, iovs, count, done): (i32, i32, i32, i32),
    mut each: impl FnMut(&mut Stdio, &mut [u8], usize, usize) -> usize,
) -> wasmtime::Result<i32> {
    let mem = memory(&mut caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    let stdio = state.stdio();
    if !fds.contains(&fd) || !stdio.open(fd) {
        return Ok(ERRNO_BADF);
    }
    if count as u32 > MAX_IOVECS {
        return Ok(ERRNO_INVAL);
    }
    let Some(parts) =
        iovecs(data, iovs as u32, count as u32).filter(|_| fits_u32(data, done as u32))
    else {
        return Ok(ERRNO_FAULT);
    };
    let mut total: u32 = 0;
    for (ptr, len) in parts {
        total = total.saturating_add(each(stdio, data, ptr, len) as u32);
    }
    Ok(if put_u32(data, done as u32, total) {
        ERRNO_SUCCESS
    } else {
        ERRNO_FAULT
    })
}

fn fd_write<T: HasStdio>(
    caller: Caller<'_, T>,
    fd: i32,
    iovs: i32,
    count: i32,
    written: i32,
) -> wasmtime::Result<i32> {
    // stderr takes the bytes and keeps none.
    through_iovecs(
        caller,
        &[1, 2],
        (fd, iovs, count, written),
        |stdio, data, ptr, len| {
            if fd == 1 {
                stdio.write(&data[ptr..ptr + len]);
            }
            len
        },
    )
}

fn fd_read<T: HasStdio>(
    caller: Caller<'_, T>,
    fd: i32,
    iovs: i32,
    count: i32,
    read: i32,
) -> wasmtime::Result<i32> {
    through_iovecs(
        caller,
        &[0],
        (fd, iovs, count, read),
        |stdio, data, ptr, len| {
            let left = &stdio.stdin[stdio.read..];
            let n = len.min(left.len());
            data[ptr..ptr + n].copy_from_slice(&left[..n]);
            stdio.read += n;
            n
        },
    )
}

/// `fdstat` of a standard stream as WASI describes one that is not a terminal: file type
/// unknown, no flags, the right to read (stdin) or to write.
fn fd_fdstat_get<T: HasStdio>(
    mut caller: Caller<'_, T>,
    fd: i32,
    at: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&mut caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    if !state.stdio().open(fd) {
        return Ok(ERRNO_BADF);
    }
    let rights = if fd == 0 {
        RIGHT_FD_READ
    } else {
        RIGHT_FD_WRITE
    };
    let mut stat = [0u8; 24];
    stat[8..16].copy_from_slice(&rights.to_le_bytes());
    stat[16..24].copy_from_slice(&rights.to_le_bytes());
    Ok(put_struct(data, at as u32, &stat))
}

/// `filestat` of a standard stream as WASI describes one that is not a terminal: all
/// zeros (file type unknown, no size, no times).
fn fd_filestat_get<T: HasStdio>(
    mut caller: Caller<'_, T>,
    fd: i32,
    at: i32,
) -> wasmtime::Result<i32> {
    let mem = memory(&mut caller)?;
    let (data, state) = mem.data_and_store_mut(&mut caller);
    if !state.stdio().open(fd) {
        return Ok(ERRNO_BADF);
    }
    Ok(put_struct(data, at as u32, &[0u8; 64]))
}

/// Writes a WASI struct (8-byte aligned) at `at`: the errno of the outcome.
fn put_struct(data: &mut [u8], at: u32, bytes: &[u8]) -> i32 {
    let at = at as usize;
    match at
        .checked_add(bytes.len())
        .and_then(|end| data.get_mut(at..end))
    {
        Some(b) if at.is_multiple_of(8) => {
            b.copy_from_slice(bytes);
            ERRNO_SUCCESS
        }
        Some(_) => ERRNO_INVAL,
        None => ERRNO_FAULT,
    }
}

fn fd_close<T: HasStdio>(mut caller: Caller<'_, T>, fd: i32) -> i32 {
    let stdio = caller.data_mut().stdio();
    if !stdio.open(fd) {
        return ERRNO_BADF;
    }
    stdio.closed[fd as usize] = true;
    ERRNO_SUCCESS
}

/// An answer for a call on descriptor `fd` that a standard stream does not support:
/// `espipe` (a stream has no position) where `seekable`, else `badf`.
fn unsupported<T: HasStdio>(caller: &mut Caller<'_, T>, fd: i32, seekable: bool) -> i32 {
    if seekable && caller.data_mut().stdio().open(fd) {
        ERRNO_SPIPE
    } else {
        ERRNO_BADF
    }
}

/// Puts Axon's descriptor calls in `linker` in place of WASI's (which must be linked
/// first, with shadowing allowed).
pub(crate) fn add_to_linker<T: HasStdio + 'static>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    const M: &str = "wasi_snapshot_preview1";
    linker.func_wrap(M, "fd_write", fd_write::<T>)?;
    linker.func_wrap(M, "fd_read", fd_read::<T>)?;
    linker.func_wrap(M, "fd_fdstat_get", fd_fdstat_get::<T>)?;
    linker.func_wrap(M, "fd_close", fd_close::<T>)?;
    // Positioned reads and writes and seeks: a stream has no position.
    linker.func_wrap(
        M,
        "fd_pread",
        |mut c: Caller<'_, T>, fd: i32, _: i32, _: i32, _: i64, _: i32| {
            unsupported(&mut c, fd, true)
        },
    )?;
    linker.func_wrap(
        M,
        "fd_pwrite",
        |mut c: Caller<'_, T>, fd: i32, _: i32, _: i32, _: i64, _: i32| {
            unsupported(&mut c, fd, true)
        },
    )?;
    linker.func_wrap(
        M,
        "fd_seek",
        |mut c: Caller<'_, T>, fd: i32, _: i64, _: i32, _: i32| unsupported(&mut c, fd, true),
    )?;
    // What only a file or a directory has: no descriptor of the module is one.
    let badf1 = |_: Caller<'_, T>, _: i32| ERRNO_BADF;
    for name in ["fd_datasync", "fd_sync"] {
        linker.func_wrap(M, name, badf1)?;
    }
    linker.func_wrap(
        M,
        "fd_advise",
        |_: Caller<'_, T>, _: i32, _: i64, _: i64, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(M, "fd_filestat_get", fd_filestat_get::<T>)?;
    linker.func_wrap(
        M,
        "fd_filestat_set_size",
        |_: Caller<'_, T>, _: i32, _: i64| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "fd_filestat_set_times",
        |_: Caller<'_, T>, _: i32, _: i64, _: i64, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "fd_readdir",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i64, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(M, "fd_renumber", |_: Caller<'_, T>, _: i32, _: i32| {
        ERRNO_BADF
    })?;
    // Paths: there is no directory to resolve one in.
    let badf3 = |_: Caller<'_, T>, _: i32, _: i32, _: i32| ERRNO_BADF;
    for name in [
        "path_create_directory",
        "path_remove_directory",
        "path_unlink_file",
    ] {
        linker.func_wrap(M, name, badf3)?;
    }
    linker.func_wrap(
        M,
        "path_filestat_get",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "path_filestat_set_times",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i64, _: i64, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "path_link",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "path_open",
        |_: Caller<'_, T>,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i32,
         _: i64,
         _: i64,
         _: i32,
         _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "path_readlink",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "path_rename",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    linker.func_wrap(
        M,
        "path_symlink",
        |_: Caller<'_, T>, _: i32, _: i32, _: i32, _: i32, _: i32| ERRNO_BADF,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quickcheck::QuickCheck;

    /// Whatever a module puts in its memory and passes, the iovecs read are inside its
    /// memory, or the call is refused; nothing panics.
    fn iovecs_stay_in_memory(data: Vec<u8>, iovs: u32, count: u8, near: bool) -> bool {
        // Pointers near the end of memory are where the edge cases are.
        let iovs = if near {
            (data.len() as u32).saturating_sub(iovs % 24)
        } else {
            iovs
        };
        match iovecs(&data, iovs, u32::from(count)) {
            None => true,
            Some(parts) => {
                parts.len() == usize::from(count)
                    && parts.iter().all(|&(ptr, len)| ptr + len <= data.len())
            }
        }
    }

    #[test]
    fn iovecs_read_from_hostile_memory_stay_inside_it() {
        QuickCheck::new()
            .tests(5000)
            .quickcheck(iovecs_stay_in_memory as fn(Vec<u8>, u32, u8, bool) -> bool);
    }

    #[test]
    fn stdout_keeps_its_bound_and_says_when_it_was_passed() {
        let mut s = Stdio::new(Vec::new(), 4);
        s.write(b"ab");
        s.write(b"cdef");
        assert_eq!(s.into_stdout(), (b"abcd".to_vec(), true));
        let mut s = Stdio::new(Vec::new(), 4);
        s.write(b"abcd");
        assert_eq!(s.into_stdout(), (b"abcd".to_vec(), false));
    }
}
