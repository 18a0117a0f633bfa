//! The swap runtime (`spec/swapping.md`): a preallocated, mapped swap file and the
//! schedule's transfers between it and the arena.
//!
//! The file is created at its full size when the executor is made, so a missing or
//! unwritable directory or a full disk fails before training starts; it is unlinked
//! when the executor is dropped or [`SwapRuntime::close`]d (the mapping itself stays
//! valid until the executor goes, so numpy views of swapped weights never dangle).
//!
//! Transfers are synchronous copies at the schedule's points: before order `k` the
//! segments starting at `k` are read in (or born), after it the segments ending at `k`
//! are written out, dropped or freed. Every swapped tensor's region is wherever its
//! buffer is now: its arena block while resident, its slot while out.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use memmap2::MmapMut;

use super::memory::Memory;
use crate::error::{Error, Result};
use crate::program::{Program, SegmentExit, Swap};

fn swap_error(reason: impl Into<String>) -> Error {
    Error::Swap {
        reason: reason.into(),
    }
}

/// A file of the planned size in the chosen directory, mapped read-write, unlinked on drop.
#[derive(Debug)]
pub struct SwapFile {
    path: PathBuf,
    map: Option<MmapMut>,
    removed: bool,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn preallocate(file: &File, len: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        let len = libc::off_t::try_from(len)
            .map_err(|_| std::io::Error::from_raw_os_error(libc::EFBIG))?;
        // SAFETY: a valid open descriptor; posix_fallocate returns an errno, sets none.
        let code = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
        match code {
            0 => return Ok(()),
            libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS => {}
            other => return Err(std::io::Error::from_raw_os_error(other)),
        }
    }
    use std::io::{Seek, SeekFrom, Write};
    let mut writer = file;
    writer.seek(SeekFrom::Start(0))?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(zeros.len());
        writer.write_all(&zeros[..n])?;
        left -= n;
    }
    writer.flush()
}

impl SwapFile {
    /// `len` bytes of real blocks in `dir`, mapped; a [`Error::Swap`] naming the
    /// directory and the reason otherwise, with nothing left behind.
    pub fn create(dir: &Path, len: usize) -> Result<SwapFile> {
        let what = format!("the swap file ({len} bytes)");
        if !dir.exists() {
            return Err(swap_error(format!(
                "swap directory {} does not exist: create it or choose another for {what}",
                dir.display()
            )));
        }
        if !dir.is_dir() {
            return Err(swap_error(format!(
                "swap directory {} is not a directory",
                dir.display()
            )));
        }
        let fail = |e: std::io::Error| {
            let mut reason = e.to_string();
            if matches!(
                e.raw_os_error(),
                Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG)
            ) {
                reason = format!("not enough space ({reason})");
            }
            swap_error(format!(
                "cannot create {what} in {}: {reason}",
                dir.display()
            ))
        };
        let (path, file) = loop {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let path = dir.join(format!("edgetrain-swap-{}-{n}.bin", std::process::id()));
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(file) => break (path, file),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(fail(e)),
            }
        };
        let mut made = SwapFile {
            path,
            map: None,
            removed: false,
        };
        if len > 0 {
            preallocate(&file, len).map_err(fail)?;
            // SAFETY: the file is this process's own, just created; nothing else maps
            // or truncates it while the mapping lives.
            made.map = Some(unsafe { MmapMut::map_mut(&file) }.map_err(fail)?);
        }
        Ok(made)
    }

    /// Where the file is.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The first byte of the mapping (dangling, never dereferenced, for an empty file).
    fn as_ptr(&mut self) -> *mut u8 {
        self.map
            .as_mut()
            .map_or(super::ARENA_ALIGNMENT as *mut u8, |m| m.as_mut_ptr())
    }

    /// Unlinks the file now; the mapping stays valid until drop.
    pub fn remove(&mut self) {
        if !self.removed {
            let _ = std::fs::remove_file(&self.path);
            self.removed = true;
        }
    }
}

impl Drop for SwapFile {
    fn drop(&mut self) {
        self.map = None;
        self.remove();
    }
}

/// Bytes moved and time spent moving them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SwapTraffic {
    /// Complete iterations.
    pub iterations: u64,
    /// Written in the last complete iteration.
    pub last_written: u64,
    /// Read in the last complete iteration.
    pub last_read: u64,
    /// Written since the executor was made.
    pub total_written: u64,
    /// Read since the executor was made.
    pub total_read: u64,
    /// Read-ins the executor waited for (every one: transfers are synchronous).
    pub waits: u64,
    /// Seconds the executor spent waiting on transfers.
    pub wait_seconds: f64,
}

/// The schedule being carried out over one executor's memory.
#[derive(Debug)]
pub struct SwapRuntime {
    file: SwapFile,
    /// Per order: `(buffer, segment)` entering before it / leaving after it.
    enter: Vec<Vec<(usize, usize)>>,
    leave: Vec<Vec<(usize, usize)>>,
    /// Per buffer: its resident segment.
    resident: Vec<Option<usize>>,
    in_iteration: bool,
    closed: bool,
    written: u64,
    read: u64,
    traffic: SwapTraffic,
}

impl SwapRuntime {
    /// Creates the swap file in `dir` and places every swapped tensor in its slot.
    pub fn new(program: &Program, memory: &mut Memory, dir: &Path) -> Result<SwapRuntime> {
        let swap = schedule(program);
        let orders = program.steps.len();
        let mut runtime = SwapRuntime {
            file: SwapFile::create(dir, swap.file_bytes)?,
            enter: vec![Vec::new(); orders],
            leave: vec![Vec::new(); orders],
            resident: vec![None; swap.buffers.len()],
            in_iteration: false,
            closed: false,
            written: 0,
            read: 0,
            traffic: SwapTraffic::default(),
        };
        for (i, b) in swap.buffers.iter().enumerate() {
            for (j, s) in b.segments.iter().enumerate() {
                runtime.enter[s.start].push((i, j));
                runtime.leave[s.end].push((i, j));
            }
            runtime.move_to_slot(program, memory, i);
        }
        Ok(runtime)
    }

    /// The swap file.
    pub fn file(&self) -> &SwapFile {
        &self.file
    }

    /// The traffic so far.
    pub fn traffic(&self) -> SwapTraffic {
        self.traffic
    }

    /// Whether an iteration has begun and not ended.
    pub fn in_iteration(&self) -> bool {
        self.in_iteration
    }

    /// Unlinks the swap file; training afterwards is refused.
    pub fn close(&mut self, program: &Program, memory: &mut Memory) {
        self.settle(program, memory);
        self.file.remove();
        self.closed = true;
    }

    fn move_to_slot(&mut self, program: &Program, memory: &mut Memory, buffer: usize) {
        let b = &schedule(program).buffers[buffer];
        // SAFETY: validation put the slot inside the file; the mapping lives as long as
        // the runtime, which lives as long as the memory (both in the executor's state).
        let ptr = unsafe { self.file.as_ptr().add(b.slot) };
        for &m in &b.members {
            // SAFETY: as above; slots are 64-byte aligned.
            unsafe { memory.place(program, m, ptr) };
        }
    }

    /// Before order 0: settles an interrupted iteration, then enters order 0.
    pub fn begin(&mut self, program: &Program, memory: &mut Memory) -> Result<()> {
        if self.closed {
            return Err(swap_error(
                "the swap file was closed with the model: compile again to train",
            ));
        }
        if self.in_iteration {
            self.settle(program, memory);
        }
        self.written = 0;
        self.read = 0;
        self.in_iteration = true;
        self.enter_order(program, memory, 0);
        Ok(())
    }

    /// After order `order` ran: its exits, then the next order's entries (or the end).
    pub fn end_step(&mut self, program: &Program, memory: &mut Memory, order: usize) {
        let swap = schedule(program);
        let leaving = std::mem::take(&mut self.leave[order]);
        for &(i, j) in &leaving {
            let b = &swap.buffers[i];
            let s = &b.segments[j];
            if s.exit == SegmentExit::Write {
                self.copy(memory, b.slot, s.offset, b.nbytes, false);
            }
            self.resident[i] = None;
            self.move_to_slot(program, memory, i);
        }
        self.leave[order] = leaving;
        if order + 1 < program.steps.len() {
            self.enter_order(program, memory, order + 1);
        } else {
            self.in_iteration = false;
            self.traffic.iterations += 1;
            self.traffic.last_written = self.written;
            self.traffic.last_read = self.read;
        }
    }

    fn enter_order(&mut self, program: &Program, memory: &mut Memory, order: usize) {
        let swap = schedule(program);
        let arena = memory.arena().as_ptr();
        let entering = std::mem::take(&mut self.enter[order]);
        for &(i, j) in &entering {
            let b = &swap.buffers[i];
            let s = &b.segments[j];
            if s.read_in {
                self.copy(memory, b.slot, s.offset, b.nbytes, true);
            }
            // SAFETY: validation put the segment inside the arena, 64-byte aligned.
            let ptr = unsafe { arena.add(s.offset) };
            for &m in &b.members {
                // SAFETY: as above; the arena lives as long as the memory.
                unsafe { memory.place(program, m, ptr) };
            }
            self.resident[i] = Some(j);
        }
        self.enter[order] = entering;
    }

    /// An iteration stopped part-way: resident persistent buffers are written back to
    /// their slots (they hold the current weights), every swapped tensor returns there.
    pub fn settle(&mut self, program: &Program, memory: &mut Memory) {
        let swap = schedule(program);
        for i in 0..self.resident.len() {
            if let Some(j) = self.resident[i].take() {
                let b = &swap.buffers[i];
                if b.persistent {
                    self.copy(memory, b.slot, b.segments[j].offset, b.nbytes, false);
                }
                self.move_to_slot(program, memory, i);
            }
        }
        self.in_iteration = false;
    }

    /// Copies `n` bytes between slot offset `slot` and arena offset `offset`.
    fn copy(&mut self, memory: &Memory, slot: usize, offset: usize, n: usize, read: bool) {
        let started = Instant::now();
        let file = self.file.as_ptr();
        let arena = memory.arena().as_ptr();
        // SAFETY: validation put `[slot, slot + size)` inside the file and `[offset,
        // offset + size)` inside the arena, `n <= size`; the two allocations are
        // distinct, and no step is running (the executor calls this between steps).
        unsafe {
            if read {
                std::ptr::copy_nonoverlapping(file.add(slot), arena.add(offset), n);
            } else {
                std::ptr::copy_nonoverlapping(arena.add(offset), file.add(slot), n);
            }
        }
        let n = n as u64;
        if read {
            self.read += n;
            self.traffic.total_read += n;
            self.traffic.waits += 1;
        } else {
            self.written += n;
            self.traffic.total_written += n;
        }
        self.traffic.wait_seconds += started.elapsed().as_secs_f64();
    }
}

fn schedule(program: &Program) -> &Swap {
    program
        .swap
        .as_ref()
        .expect("a swap runtime exists only for a program with a swap schedule")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_has_its_size_at_once_and_goes_on_drop() {
        let dir = std::env::temp_dir();
        let mut file = SwapFile::create(&dir, 3 * 4096 + 100).unwrap();
        let path = file.path().to_path_buf();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 3 * 4096 + 100);
        // SAFETY: inside the 12,388-byte mapping.
        unsafe { *file.as_ptr().add(12_387) = 7 };
        drop(file);
        assert!(!path.exists());
    }

    #[test]
    fn a_missing_directory_is_a_swap_error_naming_it() {
        let dir = std::env::temp_dir().join("edgetrain-no-such-dir-for-swap");
        let err = SwapFile::create(&dir, 64).unwrap_err();
        assert!(matches!(err, Error::Swap { .. }), "{err}");
        assert!(err.to_string().contains("does not exist"), "{err}");
    }
}
