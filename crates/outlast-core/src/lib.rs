//! Canonical types shared by every Outlast crate: the chat request, usage, stream events and
//! the error model that records who is at fault and whether another target may be tried.
//!
//! The canonical model is OpenAI's Chat Completions schema, because that is the gateway's public
//! surface: fields the gateway reads are typed, everything else rides along in `extra` maps so
//! that fields added by providers tomorrow pass through untouched.

pub mod chat;
pub mod error;
pub mod usage;

pub use chat::{ChatRequest, EmbeddingsRequest, Message, Role, StreamOptions};
pub use error::{Fault, UpstreamError, UpstreamErrorKind};
pub use usage::Usage;
