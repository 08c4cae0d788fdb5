//! Drills: run a scenario (simulated providers, a route, client load, a timeline of faults)
//! against an in-process gateway and report, per phase, what clients saw and what reached
//! the providers. Used by `outlast scenario` and by the scenario tests.

mod report;
mod run;
pub mod scenario;

pub use report::{PhaseReport, ProviderPhase, Report};
pub use run::{RunOptions, run};
pub use scenario::Scenario;
