//! What the console knows about the gateway at the other end, read
//! leniently from whatever it answered: moltd, or a real OpenClaw gateway
//! of the 2026.4.x or the 2026.9.x generation.
//!
//! Every fact is optional. A field a gateway does not send, or sends in a
//! shape this console does not know (a newer server renamed it), is
//! unknown and shown as such; it never fails the handshake or a screen.
//! The shapes read here were taken from the real gateways (see
//! `tests/fixtures/openclaw/`), not from memory:
//!
//! | gateway | `status` | update | after a restart |
//! |---|---|---|---|
//! | moltd | `version`, `pid`, `startedAt`, `install`, `auto`, … | `update.run` answers after its steps, `update.progress` events | `update.status`: the sentinel the successor verified |
//! | OpenClaw 2026.4.x | `runtimeVersion` (no pid); `uptimeMs`, `updateAvailable` in the hello snapshot | `update.run` installs inside the gateway and answers, then it restarts itself | `update.status`: `{sentinel}`, what the install claims |
//! | OpenClaw 2026.9.x | `runtimeVersion`, `pid`; `hello-ok.server` has `buildId`, `bootId` | `update.run` admits a durable run for a detached updater; `update.run.changed` events | `update.runs.get`: the run record |

mod facts;
mod hello;
mod json;
mod update;

pub use facts::{Auto, Available, Facts, Install, KillSwitch};
pub use hello::{Capabilities, Hello, Product, ServerFacts, UpdateApi};
pub use update::{
    Campaign, Claim, ClaimSource, Live, Outcome, RestartPlan, RunAnswer, RunChanged, RunHandoff,
    Step, UpdateReport, Verdict, Verification, explain_failure, verdict,
};
