//! A near-empty proxy-wasm filter: the floor of any Wasm filter that sees the
//! response body, for `make bench`.
//!
//! It does what every such filter must do and nothing more: the host enters
//! the VM once per response body chunk, the filter counts the chunk (without
//! reading it; with `{"read_body":true}` it copies each chunk into the VM with
//! `get_buffer` and counts its bytes: the floor of a filter that reads) and returns `Continue`;
//! `"header_reads":N` and `"counter_adds":N` add that many host calls per call
//! (request header reads, counter increments), to price a host call; in `on_log` it queues a tiny record
//! (`{"chunks":N,"bytes":B}`) shared with the root context, and the root's 200 ms tick
//! POSTs the queued records as one JSON array to the `streamtap_collector`
//! cluster, the way streamtap exports its summaries.
//!
//! Natively this crate is empty, so `cargo test --workspace` and clippy build it
//! on the host without the proxy-wasm SDK.

#[cfg(target_arch = "wasm32")]
mod filter;
