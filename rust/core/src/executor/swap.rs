//! The swap runtime (`spec/swapping.md`): a preallocated, mapped swap file and the
//! schedule's transfers between it and the arena.
//!
//! The file is created at its full size when the executor is made, so a missing or
//! unwritable directory or a full disk fails before training starts; it is unlinked
//! when the executor is dropped or [`SwapRuntime::close`]d (the mapping itself stays
//! valid until the executor goes, so numpy views of swapped weights never dangle).
//!
//! Transfers (`pread`/`pwrite`, not through the mapping, which only serves the views)
//! run on a background thread from two queues, read-ins first (the executor
//! may be waiting for one), each in the order issued. The read-ins of the segments
//! starting at order `k` are issued before order `k` runs and waited for only before
//! their first use (`lookahead` orders later at most). The write-outs of the segments
//! ending at `k` are issued after it; the schedule keeps their blocks reserved through
//! order `k + 1` (`held`), so each copy runs beside that step and is waited for only
//! when order `held + 1` is entered, before that order's read-ins are issued. That wait
//! is what lets a read-in overtake queued write-outs: those still pending hold blocks
//! reserved at the read's order (other bytes), and their slots are not shared with a
//! slot read then (the file plan holds a slot from its first write-out). Late read-ins
//! and late write-outs are counted, and the time spent waiting on them measured.
//! Every swapped tensor's region is wherever its buffer is now: its arena block while
//! resident, its slot while out.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// The open file, for the transfer thread's `pread`/`pwrite`.
    file: File,
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
            file,
            removed: false,
        };
        if len > 0 {
            preallocate(&made.file, len).map_err(fail)?;
            // SAFETY: the file is this process's own, just created; nothing else maps
            // or truncates it while the mapping lives.
            made.map = Some(unsafe { MmapMut::map_mut(&made.file) }.map_err(fail)?);
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

/// One transfer for the worker: `n` bytes between the arena at address `arena` and the
/// file at byte `at` (the direction is the queue's).
#[derive(Debug, Clone, Copy)]
struct Job {
    arena: usize,
    at: u64,
    n: usize,
}

/// Carries out `job` with `pread`/`pwrite` on the file, not through the mapping: the
/// copy goes through the page cache without mapping the file's pages into the process,
/// so swapped bytes never count in its resident set, no page faults are taken and no
/// `madvise` (with its TLB shootdowns on the compute threads) is needed afterwards.
/// The mapping sees the same bytes (one page cache).
fn transfer(file: &File, job: Job, kind: Kind) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileExt;
        match kind {
            Kind::Read => {
                // SAFETY: the runtime issues only transfers into a segment of the arena
                // that validation put inside it, keeps the arena alive until this thread
                // is joined, and no step touches the segment before the runtime waits
                // for this job.
                let into = unsafe { std::slice::from_raw_parts_mut(job.arena as *mut u8, job.n) };
                file.read_exact_at(into, job.at)
            }
            Kind::Write => {
                // SAFETY: as above; no step writes the block while its write-out runs
                // (the schedule reserves it until the runtime waits for this job).
                let from = unsafe { std::slice::from_raw_parts(job.arena as *const u8, job.n) };
                file.write_all_at(from, job.at)
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (file, job, kind);
        Err(std::io::Error::other(
            "swapping needs a unix file API (pread/pwrite)",
        ))
    }
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

/// Which queue a job is on: read-ins go first (the executor may be waiting for one),
/// write-outs when no read-in is queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Read = 0,
    Write = 1,
}

/// Jobs waiting, per kind, in the order issued.
#[derive(Debug, Default)]
struct Queues {
    reads: VecDeque<Job>,
    writes: VecDeque<Job>,
    closed: bool,
}

/// What the executor and the transfer thread share: the queues (and the signal that a
/// job arrived) and the jobs completed per kind (and the signal that one completed).
#[derive(Debug, Default)]
struct Shared {
    queues: Mutex<Queues>,
    arrived: Condvar,
    done: Mutex<[u64; 2]>,
    changed: Condvar,
    /// Nanoseconds the thread spent transferring.
    busy: AtomicU64,
    /// The first transfer that failed (an I/O error on the swap file).
    failure: Mutex<Option<String>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// The transfer thread and its two queues. Jobs of one kind complete in the order they
/// were issued; a read-in may overtake write-outs issued before it, which the runtime
/// allows only where they cannot touch the same bytes (see [`SwapRuntime`]).
#[derive(Debug)]
struct Worker {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    issued: [u64; 2],
}

impl Worker {
    fn start(file: File) -> Result<Worker> {
        let shared = Arc::new(Shared::default());
        let seen = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("edgetrain-swap".into())
            .spawn(move || loop {
                let (job, kind) = {
                    let mut queues = lock(&seen.queues);
                    loop {
                        if let Some(job) = queues.reads.pop_front() {
                            break (job, Kind::Read);
                        }
                        if let Some(job) = queues.writes.pop_front() {
                            break (job, Kind::Write);
                        }
                        if queues.closed {
                            return;
                        }
                        queues = seen.arrived.wait(queues).unwrap_or_else(|e| e.into_inner());
                    }
                };
                let started = Instant::now();
                let result = transfer(&file, job, kind);
                let nanos = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
                seen.busy.fetch_add(nanos, Ordering::Relaxed);
                if let Err(e) = result {
                    let what = if kind == Kind::Read {
                        "read from"
                    } else {
                        "write to"
                    };
                    lock(&seen.failure).get_or_insert_with(|| {
                        format!(
                            "cannot {what} the swap file ({} bytes at {}): {e}",
                            job.n, job.at
                        )
                    });
                }
                lock(&seen.done)[kind as usize] += 1;
                seen.changed.notify_all();
            })
            .map_err(|e| swap_error(format!("cannot start the swap thread: {e}")))?;
        Ok(Worker {
            shared,
            thread: Some(thread),
            issued: [0, 0],
        })
    }

    /// Queues `job`; its number among jobs of its kind (complete when done >= it).
    fn issue(&mut self, job: Job, kind: Kind) -> u64 {
        self.issued[kind as usize] += 1;
        {
            let mut queues = lock(&self.shared.queues);
            match kind {
                Kind::Read => queues.reads.push_back(job),
                Kind::Write => queues.writes.push_back(job),
            }
        }
        self.shared.arrived.notify_one();
        self.issued[kind as usize]
    }

    fn is_done(&self, kind: Kind, seq: u64) -> bool {
        lock(&self.shared.done)[kind as usize] >= seq
    }

    /// Blocks until job `seq` of `kind` is complete.
    fn wait(&self, kind: Kind, seq: u64) {
        let mut done = lock(&self.shared.done);
        while done[kind as usize] < seq {
            done = self
                .shared
                .changed
                .wait(done)
                .unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Whether every job issued is complete.
    fn idle(&self) -> bool {
        let done = lock(&self.shared.done);
        done[0] >= self.issued[0] && done[1] >= self.issued[1]
    }

    /// Seconds spent transferring so far.
    fn busy_seconds(&self) -> f64 {
        self.shared.busy.load(Ordering::Relaxed) as f64 * 1e-9
    }

    /// The first transfer that failed, if any.
    fn failure(&self) -> Option<String> {
        lock(&self.shared.failure).clone()
    }

    /// Blocks until every job issued is complete.
    fn wait_all(&self) {
        self.wait(Kind::Read, self.issued[0]);
        self.wait(Kind::Write, self.issued[1]);
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        lock(&self.shared.queues).closed = true; // the thread ends once both queues are empty
        self.shared.arrived.notify_all();
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
    /// Seconds the executor spent waiting on transfers: late read-ins, late write-outs,
    /// and the drain at the end of each iteration.
    pub wait_seconds: f64,
    /// Of `wait_seconds`: waiting for late read-ins.
    pub read_wait_seconds: f64,
    /// Write-outs not complete when their block was due back (the executor waited).
    pub write_waits: u64,
    /// Of `wait_seconds`: waiting for late write-outs.
    pub write_wait_seconds: f64,
    /// Seconds the transfer thread spent copying, since the executor was made (beside
    /// the steps, except what the waits show).
    pub transfer_seconds: f64,
}

/// The schedule being carried out over one executor's memory.
#[derive(Debug)]
pub struct SwapRuntime {
    /// Declared first: dropped (joined, its queue drained) before the file is unmapped.
    worker: Worker,
    file: SwapFile,
    /// Read-ins in flight: `(first use, job)`.
    reads: Vec<(usize, u64)>,
    /// Write-outs in flight: `(the first order after the block's reservation, job)`.
    writes: Vec<(usize, u64)>,
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
        let handle = file
            .file
            .try_clone()
            .map_err(|e| swap_error(format!("cannot open the swap file twice: {e}")))?;
        let mut runtime = SwapRuntime {
            worker: Worker::start(handle)?,
            file,
            reads: Vec::new(),
            writes: Vec::new(),
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
        SwapTraffic {
            transfer_seconds: self.worker.busy_seconds(),
            ..self.traffic
        }
    }

    /// An error when a transfer failed: the bytes it moved cannot be trusted.
    fn check(&self) -> Result<()> {
        match self.worker.failure() {
            Some(reason) => Err(swap_error(reason)),
            None => Ok(()),
        }
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

    /// Before order `order` runs: every read-in first used here is complete (late ones
    /// count). The write-outs due here were waited for when the order was entered.
    pub fn before_step(&mut self, order: usize) -> Result<()> {
        let started = Instant::now();
        let worker = &self.worker;
        let mut late = 0;
        self.reads.retain(|&(first_use, seq)| {
            if first_use > order {
                return true;
            }
            if !worker.is_done(Kind::Read, seq) {
                late += 1;
                worker.wait(Kind::Read, seq);
            }
            false
        });
        if late > 0 {
            let waited = started.elapsed().as_secs_f64();
            self.traffic.waits += late;
            self.traffic.wait_seconds += waited;
            self.traffic.read_wait_seconds += waited;
        }
        self.check()
    }

    /// Waits for the write-outs whose blocks the plan may give away at `order` (issued
    /// two orders before: their reservation ended at `order - 1`).
    fn wait_writes_due(&mut self, order: usize) {
        let Some(seq) = self
            .writes
            .iter()
            .filter(|&&(due, _)| due <= order)
            .map(|&(_, seq)| seq)
            .max()
        else {
            return;
        };
        self.writes.retain(|&(due, _)| due > order);
        if !self.worker.is_done(Kind::Write, seq) {
            let started = Instant::now();
            self.worker.wait(Kind::Write, seq);
            let waited = started.elapsed().as_secs_f64();
            self.traffic.write_waits += 1;
            self.traffic.wait_seconds += waited;
            self.traffic.write_wait_seconds += waited;
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
        if !self.worker.idle() {
            let started = Instant::now();
            self.worker.wait_all();
            self.traffic.wait_seconds += started.elapsed().as_secs_f64();
        }
        self.reads.clear();
        self.writes.clear();
    }

    /// After order `order` ran: its exits, then the next order's entries (or the end);
    /// an error when a transfer failed.
    pub fn end_step(&mut self, program: &Program, memory: &mut Memory, order: usize) -> Result<()> {
        let swap = schedule(program);
        let leaving = std::mem::take(&mut self.leave[order]);
        for &(i, j) in &leaving {
            let b = &swap.buffers[i];
            let s = &b.segments[j];
            if s.exit == SegmentExit::Write {
                let seq = self.issue(memory, b.slot, s.offset, b.nbytes, Kind::Write);
                self.writes.push((s.held_until() + 1, seq));
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
        self.check()
    }

    /// Order `order`'s entries: first the write-outs whose blocks the plan may give
    /// away here are waited for (a read-in may overtake write-outs still queued, and
    /// could land on such a block), then its read-ins are queued.
    fn enter_order(&mut self, program: &Program, memory: &mut Memory, order: usize) {
        self.wait_writes_due(order);
        let swap = schedule(program);
        let arena = memory.arena().as_ptr();
        let entering = std::mem::take(&mut self.enter[order]);
        for &(i, j) in &entering {
            let b = &swap.buffers[i];
            let s = &b.segments[j];
            if s.read_in {
                let seq = self.issue(memory, b.slot, s.offset, b.nbytes, Kind::Read);
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
                    let offset = b.segments[j].offset;
                    let seq = self.issue(memory, b.slot, offset, b.nbytes, Kind::Write);
                    self.worker.wait(Kind::Write, seq);
                }
                self.move_to_slot(program, memory, i);
            }
        }
        self.in_iteration = false;
    }

    /// Queues a copy of `n` bytes between slot offset `slot` and arena offset `offset`
    /// (from the slot for a read-in); its job number among its kind.
    fn issue(&mut self, memory: &Memory, slot: usize, offset: usize, n: usize, kind: Kind) -> u64 {
        // Validation put `[slot, slot + size)` inside the file and `[offset, offset +
        // size)` inside the arena, `n <= size`.
        let arena = memory.arena().as_ptr() as usize + offset;
        let counted = n as u64;
        if kind == Kind::Read {
            self.read += counted;
            self.traffic.total_read += counted;
        } else {
            self.written += counted;
            self.traffic.total_written += counted;
        }
        self.worker.issue(
            Job {
                arena,
                at: slot as u64,
                n,
            },
            kind,
        )
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
