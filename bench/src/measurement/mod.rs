//! Measuring: one variant in one round ([`round`]), the latency side by side
//! ([`paired`]), the memory of open streams ([`memory`]), the cost model's
//! workloads ([`cost`]), two set-ups for one lever ([`ab`]), the CPU windows
//! they all read ([`cpu`]), into typed [`figures`]; and the [`machine`].

pub mod ab;
pub mod cost;
pub mod cpu;
pub mod figures;
pub mod machine;
pub mod memory;
pub mod paired;
pub mod round;
