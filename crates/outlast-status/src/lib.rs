//! The status page's mechanism, free of HTTP and storage: health history in minute and day
//! buckets, the incident detection state machine (time is passed in, so tests are
//! deterministic), the Atlassian Statuspage-shaped JSON, and the server-rendered HTML page.

pub mod board;
pub mod detect;
pub mod history;
pub mod html;
pub mod i18n;
pub mod statuspage;
pub mod time;

pub use board::{Board, Notification};
pub use detect::{Detector, Event, EventKind, Impact, Incident, IncidentStatus, Thresholds};
pub use history::{Counts, History, Kind};
