//! Guest memory as host functions see it: reading the guest's arguments, writing its
//! out-parameters, and handing it buffers from its own allocator.

use wasmtime::{Caller, Memory};

use super::state::HostState;
use crate::wasm::abi::Status;

/// What an `env` function returns: a [`Status`] code, or a trap.
pub(super) type Ret = wasmtime::Result<i32>;

pub(super) fn ok(s: Status) -> Ret {
    Ok(s as i32)
}

/// `Result<T, Status>` to a status code, for host functions without returned data.
pub(super) fn code(r: Result<(), Status>) -> Ret {
    Ok(match r {
        Ok(()) => Status::Ok as i32,
        Err(s) => s as i32,
    })
}

fn mem(caller: &Caller<'_, HostState>) -> Result<Memory, Status> {
    caller.data().memory.ok_or(Status::InvalidMemoryAccess)
}

/// Two ranges of guest memory, borrowed beside the host state: for host calls that
/// only look at their arguments (a header's name and value), no copies.
pub(super) fn two_slices<'a>(
    caller: &'a mut Caller<'_, HostState>,
    (ap, al): (i32, i32),
    (bp, bl): (i32, i32),
) -> Result<(&'a [u8], &'a [u8], &'a mut HostState), Status> {
    let m = mem(caller)?;
    let (data, state) = m.data_and_store_mut(caller);
    let data: &'a [u8] = data;
    let range = |p: i32, l: i32| -> Result<&'a [u8], Status> {
        let (p, l) = (p as u32 as usize, l as u32 as usize);
        if l == 0 {
            return Ok(&[]);
        }
        data.get(p..p.checked_add(l).ok_or(Status::InvalidMemoryAccess)?)
            .ok_or(Status::InvalidMemoryAccess)
    };
    Ok((range(ap, al)?, range(bp, bl)?, state))
}

/// A copy of guest memory `[ptr, ptr+len)`; `(0, 0)` is empty.
pub(super) fn read(caller: &Caller<'_, HostState>, ptr: i32, len: i32) -> Result<Vec<u8>, Status> {
    let (p, l) = (ptr as u32 as usize, len as u32 as usize);
    if l == 0 {
        return Ok(Vec::new());
    }
    let m = mem(caller)?;
    m.data(caller)
        .get(p..p.checked_add(l).ok_or(Status::InvalidMemoryAccess)?)
        .map(<[u8]>::to_vec)
        .ok_or(Status::InvalidMemoryAccess)
}

pub(super) fn read_str(
    caller: &Caller<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<String, Status> {
    String::from_utf8(read(caller, ptr, len)?).map_err(|_| Status::BadArgument)
}

pub(super) fn write(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    bytes: &[u8],
) -> Result<(), Status> {
    let m = mem(caller)?;
    let p = ptr as u32 as usize;
    m.data_mut(caller)
        .get_mut(p..p + bytes.len())
        .ok_or(Status::InvalidMemoryAccess)?
        .copy_from_slice(bytes);
    Ok(())
}

pub(super) fn write_u32(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    v: u32,
) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

pub(super) fn write_u64(
    caller: &mut Caller<'_, HostState>,
    ptr: i32,
    v: u64,
) -> Result<(), Status> {
    write(caller, ptr, &v.to_le_bytes())
}

/// Hand `bytes` to the guest: its allocator gives the buffer (never for 0 bytes), then
/// the pointer and size go to `ptr_ptr` and `size_ptr`. The allocator may run the guest's
/// GC and WASI calls; a trap in it is the caller's trap.
pub(super) fn give(
    caller: &mut Caller<'_, HostState>,
    bytes: &[u8],
    ptr_ptr: i32,
    size_ptr: i32,
) -> Ret {
    if bytes.is_empty() {
        return code(write_u32(caller, ptr_ptr, 0).and(write_u32(caller, size_ptr, 0)));
    }
    let Some(malloc) = caller.data().malloc.clone() else {
        return ok(Status::InvalidMemoryAccess);
    };
    let addr = malloc.call(&mut *caller, bytes.len() as i32)?;
    if addr == 0 {
        return ok(Status::InvalidMemoryAccess);
    }
    // Memory may have grown (and moved) during the allocator: write through a fresh view.
    code(
        write(caller, addr, bytes)
            .and_then(|()| write_u32(caller, ptr_ptr, addr as u32))
            .and_then(|()| write_u32(caller, size_ptr, bytes.len() as u32)),
    )
}
