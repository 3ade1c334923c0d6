//! What one plugin instance may allocate, as totals over the whole instance.
//!
//! wasmtime's `StoreLimits` caps each memory and each table on its own, so
//! with N memories allowed an instance could hold N times the memory cap.
//! This limiter counts every memory's bytes and every table's elements
//! together (initial sizes included: wasmtime asks the limiter for those
//! too), next to the counts of instances, tables and memories a component
//! may create. Going past a cap traps the call (a growth the guest could
//! test for and ignore would let it spin near the cap); the instance is
//! then replaced like after any trap.
//!
//! The on-demand allocator is kept rather than the pooling one: pooling
//! reserves every slot's address space up front, sized for the largest
//! instance, while an instance here is one model's heap (tens of MB for
//! the default bundle, ~1 GB for RoBERTa-base) and the pool's size follows
//! the memory budget at run time.

use wasmtime::ResourceLimiter;

use super::Limits;

/// Which cap a guest went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Capped {
    /// Bytes of every linear memory of the instance together.
    Memory,
    /// Elements of every table of the instance together.
    TableElements,
}

/// The error a growth past a cap traps with.
#[derive(Debug, Clone, thiserror::Error)]
#[error("sandbox cap: {what} would reach {wanted} (cap {cap})", what = match .capped {
    Capped::Memory => "linear memory bytes",
    Capped::TableElements => "table elements",
})]
pub struct CapExceeded {
    pub capped: Capped,
    pub wanted: usize,
    pub cap: usize,
}

/// The limiter of one store (one instance of a plugin).
#[derive(Debug)]
pub(crate) struct SandboxLimiter {
    memory_cap: usize,
    table_elements_cap: usize,
    instances: usize,
    tables: usize,
    memories: usize,
    memory_bytes: usize,
    table_elements: usize,
}

impl SandboxLimiter {
    pub(crate) fn new(limits: &Limits) -> SandboxLimiter {
        SandboxLimiter {
            memory_cap: limits.memory_bytes,
            table_elements_cap: limits.max_table_elements,
            instances: limits.max_instances,
            tables: limits.max_tables,
            memories: limits.max_memories,
            memory_bytes: 0,
            table_elements: 0,
        }
    }

    /// Bytes of linear memory the instance holds (all memories).
    #[cfg(test)]
    fn memory_bytes(&self) -> usize {
        self.memory_bytes
    }

    fn grow(total: &mut usize, cap: usize, capped: Capped, current: usize, desired: usize) -> wasmtime::Result<bool> {
        let wanted = total.saturating_add(desired.saturating_sub(current));
        if wanted > cap {
            return Err(CapExceeded { capped, wanted, cap }.into());
        }
        *total = wanted;
        Ok(true)
    }
}

impl ResourceLimiter for SandboxLimiter {
    fn memory_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        // Past the memory's own declared maximum: `memory.grow` answers -1,
        // as the wasm spec says, and nothing is counted.
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Self::grow(&mut self.memory_bytes, self.memory_cap, Capped::Memory, current, desired)
    }

    fn table_growing(&mut self, current: usize, desired: usize, maximum: Option<usize>) -> wasmtime::Result<bool> {
        if maximum.is_some_and(|max| desired > max) {
            return Ok(false);
        }
        Self::grow(&mut self.table_elements, self.table_elements_cap, Capped::TableElements, current, desired)
    }

    fn memory_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("a memory growth the limiter allowed failed"))
    }

    fn table_grow_failed(&mut self, error: wasmtime::Error) -> wasmtime::Result<()> {
        Err(error.context("a table growth the limiter allowed failed"))
    }

    fn instances(&self) -> usize {
        self.instances
    }

    fn tables(&self) -> usize {
        self.tables
    }

    fn memories(&self) -> usize {
        self.memories
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(memory: usize, elements: usize) -> SandboxLimiter {
        SandboxLimiter::new(&Limits { memory_bytes: memory, max_table_elements: elements, ..Limits::default() })
    }

    #[test]
    fn caps_are_totals_over_every_memory_and_table() {
        let mut l = limiter(100, 10);
        // Two memories of 60 bytes: the second one goes past the total.
        assert!(l.memory_growing(0, 60, None).unwrap());
        let err = l.memory_growing(0, 60, None).unwrap_err();
        let cap = err.downcast_ref::<CapExceeded>().expect("typed");
        assert_eq!((cap.capped, cap.wanted, cap.cap), (Capped::Memory, 120, 100));
        assert_eq!(l.memory_bytes(), 60);
        // Growing the first one by 40 still fits.
        assert!(l.memory_growing(60, 100, None).unwrap());
        assert_eq!(l.memory_bytes(), 100);
        assert!(l.table_growing(0, 6, None).unwrap());
        assert!(l.table_growing(6, 11, None).unwrap_err().downcast_ref::<CapExceeded>().is_some());
        assert!(l.table_growing(0, 4, None).unwrap());
        assert!(l.table_growing(0, 1, None).is_err());
    }

    #[test]
    fn a_memorys_own_maximum_fails_the_grow_without_trapping() {
        let mut l = limiter(1000, 10);
        assert!(!l.memory_growing(10, 20, Some(15)).unwrap());
        assert!(!l.table_growing(1, 5, Some(2)).unwrap());
        assert_eq!(l.memory_bytes(), 0);
    }
}
