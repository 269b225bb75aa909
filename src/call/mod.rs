//! One call as it passes: the tap that routes its bytes, the record of its
//! facts and timings, the estimates and the gap histogram.

pub mod estimate;
pub mod gaps;
pub mod identity;
pub mod record;
pub mod tap;

#[cfg(test)]
mod fixture_tests;
