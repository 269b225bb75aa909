//! One call as it passes: the tap that routes its bytes, the record of its
//! facts and timings, the estimates, the histograms and the streaming-health verdict.

pub mod cost;
pub mod estimate;
pub mod health;
pub mod histogram;
pub mod identity;
pub mod live;
pub mod record;
pub mod tap;
pub mod timeline;

#[cfg(test)]
mod fixture_tests;
