//! Test bed for streamtap: real HTTP servers and an Envoy harness, shared by the
//! integration tests, `make demo` and `make bench`.

pub mod browser;
pub mod client;
pub mod collector;
pub mod daemon;
pub mod envoy;
pub mod http1;
pub mod nginx;
pub mod procfs;
pub mod prometheus;
pub mod replay;
pub mod scratch;
pub mod scripted;
pub mod upstream;
pub mod viewer;
pub mod wait;
