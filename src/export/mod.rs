//! Shipping summaries: the queue with its batches and retry policy, and the
//! OTLP body for `format: "otlp"`.

pub mod labels;
pub mod otlp;
pub mod queue;
