//! The arena and the views kernels get into it: the only `unsafe` of the executor.
//!
//! The plan may give several tensors the same bytes (in-place sharing, views) and lays
//! tensors that are never alive together over each other, so tensors cannot be separate
//! Rust allocations. Every tensor is a raw region (`ptr`, `bytes`) instead, and slices
//! are handed out per step through [`Views`], which keeps a ledger of the byte ranges
//! it has granted and refuses (with an error, not UB) any mutable range overlapping
//! another granted range, or any shared range overlapping a granted mutable one. The
//! single exception is [`Views::in_out`], which hands one mutable slice for an
//! input/output pair placed on the same bytes, as `kernels::InOut::InPlace`.
//!
//! Why this is sound: a `Views` borrows the `Memory` mutably for its whole life `'m`,
//! so no other safe access to the arena exists while its slices live; within one
//! `Views` the ledger guarantees the slices obey Rust's aliasing rules; every region
//! was checked to lie inside its allocation with the element type's alignment when it
//! was made. External regions are memory the caller binds with the same promise
//! (`Memory::bind_external` is `unsafe`).

use std::alloc::{alloc_zeroed, dealloc, Layout};
use std::ptr::NonNull;

use crate::error::{invalid, Result};
use crate::program::{DType, Program};

/// The arena's alignment (the planner's `ALIGNMENT`).
pub const ARENA_ALIGNMENT: usize = 64;

/// One zeroed, 64-byte-aligned allocation of the planned size.
#[derive(Debug)]
pub struct Arena {
    ptr: NonNull<u8>,
    layout: Option<Layout>,
    len: usize,
}

impl Arena {
    /// Allocates `len` zeroed bytes, or refuses with an error when the size is impossible
    /// or the allocation fails.
    pub fn new(len: usize) -> Result<Arena> {
        if len == 0 {
            let dangling = NonNull::new(ARENA_ALIGNMENT as *mut u8).expect("non-zero address");
            return Ok(Arena {
                ptr: dangling,
                layout: None,
                len,
            });
        }
        let layout = Layout::from_size_align(len, ARENA_ALIGNMENT)
            .map_err(|e| invalid("arena", "size", format!("{len} bytes: {e}")))?;
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let ptr = NonNull::new(raw).ok_or_else(|| {
            invalid(
                "arena",
                "allocation",
                format!("could not allocate {len} bytes"),
            )
        })?;
        Ok(Arena {
            ptr,
            layout: Some(layout),
            len,
        })
    }

    /// Bytes of the arena.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the arena holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first byte (64-byte aligned).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Arena {
    fn drop(&mut self) {
        if let Some(layout) = self.layout {
            // SAFETY: allocated in `new` with this layout, freed once.
            unsafe { dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// Where one tensor's bytes are.
#[derive(Debug, Clone, Copy)]
struct Region {
    ptr: *mut u8,
    bytes: usize,
    dtype: DType,
}

/// The arena plus a region per tensor (`None`: an external tensor not bound yet).
#[derive(Debug)]
pub struct Memory {
    arena: Arena,
    regions: Vec<Option<Region>>,
    names: Vec<String>,
}

// SAFETY: `Memory` owns its arena; external regions are bound under the contract of
// `bind_external` (valid and not accessed elsewhere while the executor runs). Access
// goes through `&mut Memory`, so moving it to a worker thread moves the only access.
unsafe impl Send for Memory {}
// SAFETY: through `&Memory` only addresses are read (`region`, `same_bytes`, `arena`);
// every access to the bytes needs `&mut Memory` (`views`).
unsafe impl Sync for Memory {}

impl Memory {
    /// The arena of `program` and the region of every arena tensor.
    pub fn new(program: &Program) -> Result<Memory> {
        let arena = Arena::new(program.arena_bytes)?;
        let regions = program
            .tensors
            .iter()
            .map(|t| {
                t.offset.map(|offset| Region {
                    // SAFETY: `Program::validate` checked offset + bytes <= arena_bytes.
                    ptr: unsafe { arena.as_ptr().add(offset) },
                    bytes: t.nbytes().unwrap_or(0),
                    dtype: t.dtype,
                })
            })
            .collect();
        let names = program.tensors.iter().map(|t| t.name.clone()).collect();
        Ok(Memory {
            arena,
            regions,
            names,
        })
    }

    /// The arena.
    pub fn arena(&self) -> &Arena {
        &self.arena
    }

    /// Binds external tensor `tensor` to `bytes` bytes at `ptr`.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of `bytes` bytes, aligned for the
    /// tensor's type, for as long as this `Memory` lives, and nothing else may access
    /// those bytes while a step runs.
    pub unsafe fn bind_external(
        &mut self,
        tensor: usize,
        ptr: *mut u8,
        bytes: usize,
        dtype: DType,
    ) {
        self.regions[tensor] = Some(Region { ptr, bytes, dtype });
    }

    /// Moves tensor `tensor` (of `program`) to the bytes at `ptr`: a swapped tensor goes
    /// between its arena segment and its swap-file slot.
    ///
    /// # Safety
    /// `ptr` must be valid for reads and writes of the tensor's bytes, aligned for its
    /// type, for as long as this `Memory` lives or until the tensor is moved again.
    pub(crate) unsafe fn place(&mut self, program: &Program, tensor: usize, ptr: *mut u8) {
        let t = &program.tensors[tensor];
        self.regions[tensor] = Some(Region {
            ptr,
            bytes: t.nbytes().unwrap_or(0),
            dtype: t.dtype,
        });
    }

    /// The first byte of tensor `tensor` and its byte count (`None`: unbound external).
    pub fn region(&self, tensor: usize) -> Option<(*mut u8, usize)> {
        self.regions
            .get(tensor)
            .copied()
            .flatten()
            .map(|r| (r.ptr, r.bytes))
    }

    /// Whether two tensors are the same bytes (the plan's in-place sharing).
    pub fn same_bytes(&self, a: usize, b: usize) -> bool {
        match (self.regions[a], self.regions[b]) {
            (Some(x), Some(y)) => x.ptr == y.ptr && x.bytes == y.bytes,
            _ => false,
        }
    }

    /// Reads `tensor` as `T` outside any step (the loss scalar, the regularizer).
    pub fn read_scalars<T: Element>(&mut self, tensor: usize) -> Result<Vec<T>> {
        let mut views = self.views();
        Ok(views.read::<T>(tensor)?.to_vec())
    }

    /// A fresh ledger for one step.
    pub fn views(&mut self) -> Views<'_> {
        Views {
            memory: self,
            granted: Vec::new(),
        }
    }
}

/// Element types a tensor can be viewed as.
pub trait Element: Copy + 'static {
    /// The program's dtype of this type.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::Float32;
}
impl Element for i32 {
    const DTYPE: DType = DType::Int32;
}
impl Element for u8 {
    const DTYPE: DType = DType::Uint8;
}

/// Slices into a [`Memory`] for one step, with the ledger that keeps them alias-free.
pub struct Views<'m> {
    memory: &'m mut Memory,
    granted: Vec<(usize, usize, bool)>,
}

impl<'m> Views<'m> {
    fn region<T: Element>(&self, tensor: usize) -> Result<Region> {
        let region = self
            .memory
            .regions
            .get(tensor)
            .copied()
            .flatten()
            .ok_or_else(|| {
                let name = self.memory.names.get(tensor).map_or("?", String::as_str);
                invalid(
                    "executor",
                    "tensor",
                    format!("external tensor '{name}' is not bound"),
                )
            })?;
        if region.dtype != T::DTYPE {
            let name = &self.memory.names[tensor];
            return Err(invalid(
                "executor",
                "dtype",
                format!(
                    "tensor '{name}' is {:?}, used as {:?}",
                    region.dtype,
                    T::DTYPE
                ),
            ));
        }
        Ok(region)
    }

    fn grant(&mut self, tensor: usize, region: Region, write: bool) -> Result<()> {
        let start = region.ptr as usize;
        let end = start + region.bytes;
        for &(s, e, w) in &self.granted {
            if (write || w) && start < e && s < end {
                let name = &self.memory.names[tensor];
                return Err(invalid(
                    "executor",
                    "aliasing",
                    format!("tensor '{name}' overlaps another operand of the same step"),
                ));
            }
        }
        self.granted.push((start, end, write));
        Ok(())
    }

    /// Tensor `tensor` to read.
    pub fn read<T: Element>(&mut self, tensor: usize) -> Result<&'m [T]> {
        let region = self.region::<T>(tensor)?;
        self.grant(tensor, region, false)?;
        let len = region.bytes / std::mem::size_of::<T>();
        // SAFETY: the region is valid and aligned (module doc); the ledger has no
        // mutable grant overlapping it, and `'m` holds the memory exclusively.
        Ok(unsafe { std::slice::from_raw_parts(region.ptr as *const T, len) })
    }

    /// Tensor `tensor` to write.
    pub fn write<T: Element>(&mut self, tensor: usize) -> Result<&'m mut [T]> {
        let region = self.region::<T>(tensor)?;
        self.grant(tensor, region, true)?;
        let len = region.bytes / std::mem::size_of::<T>();
        // SAFETY: as in `read`, and the ledger has no other grant overlapping it.
        Ok(unsafe { std::slice::from_raw_parts_mut(region.ptr as *mut T, len) })
    }

    /// An input/output pair: one buffer when the plan placed them on the same bytes,
    /// else two disjoint slices.
    pub fn in_out(&mut self, input: usize, output: usize) -> Result<crate::kernels::InOut<'m>> {
        if self.memory.same_bytes(input, output) {
            Ok(crate::kernels::InOut::InPlace(self.write(output)?))
        } else {
            let x = self.read(input)?;
            Ok(crate::kernels::InOut::Separate(x, self.write(output)?))
        }
    }

    /// Whether two tensors are the same bytes.
    pub fn same_bytes(&self, a: usize, b: usize) -> bool {
        self.memory.same_bytes(a, b)
    }
}
