//! Readers for the shapes the wire formats have in common: a usage object
//! whose keys each API spells its own way, an error object, the response's
//! id and model.

use crate::call::record::{CallRecord, UsageCount};
use crate::wire::json::Json;
use crate::ParseError;
use std::borrow::Cow;

type Result<T> = std::result::Result<T, ParseError>;

/// How one API spells its usage counts. `*_details` name a nested object
/// holding `cached_tokens` / `reasoning_tokens` (OpenAI's shape).
pub struct UsageKeys {
    pub input: &'static [u8],
    pub output: &'static [u8],
    pub cache_read: Option<&'static [u8]>,
    pub cache_write: Option<&'static [u8]>,
    pub input_details: Option<&'static [u8]>,
    pub output_details: Option<&'static [u8]>,
}

/// A usage object (or null). Counts repeat across events and later ones may
/// be null: a number replaces what was there, null leaves it.
pub fn read_usage(j: &mut Json<'_>, keys: &UsageKeys, record: &mut CallRecord) -> Result<()> {
    j.opt_object(|key, j| {
        if key == keys.input {
            count(j, record, UsageCount::Input)
        } else if key == keys.output {
            count(j, record, UsageCount::Output)
        } else if Some(key) == keys.cache_read {
            count(j, record, UsageCount::CacheRead)
        } else if Some(key) == keys.cache_write {
            count(j, record, UsageCount::CacheWrite)
        } else if Some(key) == keys.input_details {
            j.opt_object(|key, j| match key {
                b"cached_tokens" => count(j, record, UsageCount::CacheRead),
                _ => j.skip(),
            })
        } else if Some(key) == keys.output_details {
            j.opt_object(|key, j| match key {
                b"reasoning_tokens" => count(j, record, UsageCount::ReasoningOutput),
                _ => j.skip(),
            })
        } else {
            j.skip()
        }
    })
}

fn count(j: &mut Json<'_>, record: &mut CallRecord, which: UsageCount) -> Result<()> {
    if let Some(n) = j.opt_u64()? {
        record.set_usage(which, n);
    }
    Ok(())
}

/// An `{"message": ...}` error object, or null. True when there was one; its
/// message (if any) goes to `message`.
pub fn read_error<'a>(j: &mut Json<'a>, message: &mut Option<Cow<'a, str>>) -> Result<bool> {
    if j.null() {
        return Ok(false);
    }
    j.object(|key, j| match key {
        b"message" => j.set_str(&mut *message),
        _ => j.skip(),
    })?;
    Ok(true)
}

/// The response's `id`.
pub fn read_response_id(j: &mut Json<'_>, record: &mut CallRecord) -> Result<()> {
    j.with_str(|id| record.set_response_id(id))
}

/// The `model` that answered.
pub fn read_response_model(j: &mut Json<'_>, record: &mut CallRecord) -> Result<()> {
    j.with_str(|model| record.set_response_model(model))
}
