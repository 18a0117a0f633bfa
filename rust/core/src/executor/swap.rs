//! The swap runtime (`spec/swapping.md`): a preallocated, mapped swap file and the
//! schedule's transfers between it and the arena.
//!
//! The file is created at its full size when the executor is made, so a missing or
//! unwritable directory or a full disk fails before training starts; it is unlinked
//! when the executor is dropped or [`SwapRuntime::close`]d (the mapping itself stays
//! valid until the executor goes, so numpy views of swapped weights never dangle).
//!
//! Transfers run on a background thread, in the order they are issued (one FIFO queue,
//! so a read of a slot or into a block always follows the write that precedes it): the
//! read-ins of the segments starting at order `k` are issued before order `k` runs and
//! waited for only before their first use (`lookahead` orders later at most); the
//! write-outs of the segments ending at `k` are issued after it and waited for before
//! order `k + 1` runs, since the plan may give their bytes to the next step. A late
//! read-in is counted as a wait, and the time spent waiting on the queue is measured.
//! Every swapped tensor's region is wherever its buffer is now: its arena block while
//! resident, its slot while out.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
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

    /// Bytes of the file.
    pub fn len(&self) -> usize {
        self.map.as_ref().map_or(0, |m| m.len())
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
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

/// One copy for the worker: `n` bytes from address `from` to address `to`.
#[derive(Debug, Clone, Copy)]
struct Job {
    from: usize,
    to: usize,
    n: usize,
    /// The whole pages of the mapping the copy touched, `(start, len)`: released from
    /// the process afterwards, so swapped bytes stop counting in its resident set.
    release: (usize, usize),
}

/// Drops pages of the shared file mapping from the process (`MADV_DONTNEED`): the page
/// cache keeps their data and writes it back, a later access faults them in again.
fn release_pages(start: usize, len: usize) {
    #[cfg(unix)]
    if len > 0 {
        // SAFETY: `[start, start + len)` is whole pages inside the live mapping of a
        // shared file; dropping them loses no data.
        unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_DONTNEED) };
    }
    #[cfg(not(unix))]
    let _ = (start, len);
}

/// Jobs completed so far, and the signal that more completed.
#[derive(Debug, Default)]
struct Progress {
    done: Mutex<u64>,
    changed: Condvar,
}

/// The transfer thread and its queue; jobs complete in the order they were issued.
#[derive(Debug)]
struct Worker {
    queue: Option<Sender<Job>>,
    progress: Arc<Progress>,
    thread: Option<JoinHandle<()>>,
    issued: u64,
}

impl Worker {
    fn start() -> Result<Worker> {
        let (queue, jobs) = channel::<Job>();
        let progress = Arc::new(Progress::default());
        let seen = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name("edgetrain-swap".into())
            .spawn(move || {
                for job in jobs {
                    // SAFETY: the runtime issues only copies between a slot of the
                    // mapping and a segment of the arena that validation put inside
                    // them, and keeps both alive until this thread is joined; no step
                    // touches the segment before the runtime waits for this job.
                    unsafe {
                        std::ptr::copy_nonoverlapping(
                            job.from as *const u8,
                            job.to as *mut u8,
                            job.n,
                        )
                    };
                    release_pages(job.release.0, job.release.1);
                    let mut done = seen.done.lock().unwrap_or_else(|e| e.into_inner());
                    *done += 1;
                    seen.changed.notify_all();
                }
            })
            .map_err(|e| swap_error(format!("cannot start the swap thread: {e}")))?;
        Ok(Worker {
            queue: Some(queue),
            progress,
            thread: Some(thread),
            issued: 0,
        })
    }

    /// Queues `job`; its sequence number (complete when `done >= seq`).
    fn issue(&mut self, job: Job) -> u64 {
        self.issued += 1;
        let sent = self.queue.as_ref().map(|q| q.send(job));
        if !matches!(sent, Some(Ok(()))) {
            // the thread is gone (it cannot panic: a copy does not fail): copy here
            // SAFETY: as in the thread.
            unsafe {
                std::ptr::copy_nonoverlapping(job.from as *const u8, job.to as *mut u8, job.n)
            };
            let mut done = self.progress.done.lock().unwrap_or_else(|e| e.into_inner());
            *done += 1;
        }
        self.issued
    }

    fn is_done(&self, seq: u64) -> bool {
        *self.progress.done.lock().unwrap_or_else(|e| e.into_inner()) >= seq
    }

    /// Blocks until job `seq` is complete.
    fn wait(&self, seq: u64) {
        let mut done = self.progress.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < seq {
            done = self
                .progress
                .changed
                .wait(done)
                .unwrap_or_else(|e| e.into_inner());
        }
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.queue = None; // ends the thread's loop once the queue is drained
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
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
    /// Read-ins not complete when their segment's first use came (the executor waited).
    pub waits: u64,
    /// Seconds the executor spent waiting on transfers (late read-ins, and write-outs
    /// not complete before the next step or the end of the iteration).
    pub wait_seconds: f64,
}

/// The schedule being carried out over one executor's memory.
#[derive(Debug)]
pub struct SwapRuntime {
    /// Declared first: dropped (joined, its queue drained) before the file is unmapped.
    worker: Worker,
    file: SwapFile,
    /// Read-ins in flight: `(first use, job)`.
    reads: Vec<(usize, u64)>,
    /// The last write-out issued.
    last_write: u64,
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
        let file = SwapFile::create(dir, swap.file_bytes)?;
        let mut runtime = SwapRuntime {
            worker: Worker::start()?,
            file,
            reads: Vec::new(),
            last_write: 0,
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

    /// Before order `order` runs: every write-out issued so far is complete (the step may
    /// reuse its bytes) and every read-in first used here is complete (late ones count).
    pub fn before_step(&mut self, order: usize) {
        let started = Instant::now();
        let mut waited = !self.worker.is_done(self.last_write);
        self.worker.wait(self.last_write);
        let worker = &self.worker;
        let mut late = 0;
        self.reads.retain(|&(first_use, seq)| {
            if first_use > order {
                return true;
            }
            if !worker.is_done(seq) {
                late += 1;
                worker.wait(seq);
            }
            false
        });
        waited |= late > 0;
        self.traffic.waits += late;
        if waited {
            self.traffic.wait_seconds += started.elapsed().as_secs_f64();
        }
    }

    /// Drops the whole file's pages from the process (after the caller wrote the weights
    /// into their slots, which touched them); their data stays in the page cache.
    pub fn release_file_pages(&mut self) {
        self.drain();
        let page = page_size();
        release_pages(self.file.as_ptr() as usize, self.file.len() / page * page);
    }

    /// Waits for every transfer issued (time counted, not as late read-ins).
    pub fn wait_all(&mut self) {
        self.drain();
    }

    /// Waits for every transfer issued.
    fn drain(&mut self) {
        if !self.worker.is_done(self.worker.issued) {
            let started = Instant::now();
            self.worker.wait(self.worker.issued);
            self.traffic.wait_seconds += started.elapsed().as_secs_f64();
        }
        self.reads.clear();
    }

    /// After order `order` ran: its exits, then the next order's entries (or the end).
    pub fn end_step(&mut self, program: &Program, memory: &mut Memory, order: usize) {
        let swap = schedule(program);
        let leaving = std::mem::take(&mut self.leave[order]);
        for &(i, j) in &leaving {
            let b = &swap.buffers[i];
            let s = &b.segments[j];
            if s.exit == SegmentExit::Write {
                self.last_write = self.issue(memory, b.slot, s.offset, b.nbytes, false);
            }
            self.resident[i] = None;
            self.move_to_slot(program, memory, i);
        }
        self.leave[order] = leaving;
        if order + 1 < program.steps.len() {
            self.enter_order(program, memory, order + 1);
        } else {
            self.drain(); // the weights are current in the file when the caller looks
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
                let seq = self.issue(memory, b.slot, s.offset, b.nbytes, true);
                self.reads.push((s.first_use.unwrap_or(s.start), seq));
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
        self.drain();
        let swap = schedule(program);
        for i in 0..self.resident.len() {
            if let Some(j) = self.resident[i].take() {
                let b = &swap.buffers[i];
                if b.persistent {
                    let seq = self.issue(memory, b.slot, b.segments[j].offset, b.nbytes, false);
                    self.worker.wait(seq);
                }
                self.move_to_slot(program, memory, i);
            }
        }
        self.in_iteration = false;
    }

    /// Queues a copy of `n` bytes between slot offset `slot` and arena offset `offset`
    /// (a read-in when `read`); its job number.
    fn issue(&mut self, memory: &Memory, slot: usize, offset: usize, n: usize, read: bool) -> u64 {
        // Addresses only: validation put `[slot, slot + size)` inside the file and
        // `[offset, offset + size)` inside the arena, `n <= size`.
        let file = self.file.as_ptr() as usize + slot;
        let arena = memory.arena().as_ptr() as usize + offset;
        let (from, to) = if read { (file, arena) } else { (arena, file) };
        let page = page_size();
        let base = self.file.as_ptr() as usize;
        let first = (slot / page) * page;
        let last = (slot + n).div_ceil(page) * page;
        let last = last.min(self.file.len() / page * page);
        let release = (base + first, last.saturating_sub(first));
        let counted = n as u64;
        if read {
            self.read += counted;
            self.traffic.total_read += counted;
        } else {
            self.written += counted;
            self.traffic.total_written += counted;
        }
        self.worker.issue(Job {
            from,
            to,
            n,
            release,
        })
    }
}

/// The system's page size.
fn page_size() -> usize {
    #[cfg(unix)]
    {
        // SAFETY: sysconf has no preconditions.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        if size > 0 {
            return size as usize;
        }
    }
    4096
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
