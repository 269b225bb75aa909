//! Shipping summaries: the queue with its batches and retry policy, the
//! hand-over of an unsent queue between configs, and the OTLP body for
//! `format: "otlp"`.

pub mod handoff;
pub mod labels;
pub mod otlp;
pub mod queue;
