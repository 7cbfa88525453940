//! The driver on tokio's paused clock: hours pass in no time, and every
//! check and apply is observed with the (simulated) time it happened.

use std::sync::Mutex;

use molt_protocol::status::EnvSource;
use molt_protocol::update::Channel;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::*;
use crate::config::Settings;

const H: u64 = 3600 * 1000;
const BASE_MS: u64 = 1_700_000_000_000;

#[derive(Debug, PartialEq)]
enum Seen {
    /// Hours (ms) since the start.
    Checked(u64),
    Applied(u64, Version),
    Notified(String),
}

struct Fake {
    base: Instant,
    live: Mutex<Live>,
    registry: Mutex<Result<Version, String>>,
    outcome: Mutex<ApplyOutcome>,
    events: mpsc::UnboundedSender<Seen>,
}

impl Fake {
    fn since_start(&self) -> u64 {
        self.base.elapsed().as_millis() as u64
    }

    fn set_registry(&self, version: &str) {
        *self.registry.lock().unwrap() = Ok(v(version));
    }
}

impl Hooks for Arc<Fake> {
    fn now_ms(&self) -> u64 {
        BASE_MS + self.since_start()
    }

    fn live(&self) -> Live {
        self.live.lock().unwrap().clone()
    }

    async fn check(&self) -> Result<Version, String> {
        let _ = self.events.send(Seen::Checked(self.since_start()));
        self.registry.lock().unwrap().clone()
    }

    async fn apply(&self, version: Version) -> ApplyOutcome {
        let _ = self.events.send(Seen::Applied(self.since_start(), version));
        self.outcome.lock().unwrap().clone()
    }

    fn notify(&self, available: UpdateAvailable) {
        let _ = self.events.send(Seen::Notified(available.latest_version));
    }
}

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

struct Harness {
    fake: Arc<Fake>,
    shared: Arc<Shared>,
    events: mpsc::UnboundedReceiver<Seen>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl Harness {
    /// Auto-apply on `channel`, npm install, 1.0.0 running, the registry
    /// at `registry`.
    fn start(channel: Channel, registry: &str, tune: impl FnOnce(&mut Live)) -> Self {
        let mut settings = Settings::default().update;
        settings.auto.enabled = true;
        settings.channel = channel;
        let mut live = Live {
            settings,
            install: InstallMode::Npm,
            kill_switch: KillSwitch::default(),
            running: v("1.0.0"),
        };
        tune(&mut live);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("update-check.json");
        let shared = Arc::new(Shared::load(&path, BASE_MS));
        let (tx, events) = mpsc::unbounded_channel();
        let fake = Arc::new(Fake {
            base: Instant::now(),
            live: Mutex::new(live),
            registry: Mutex::new(Ok(v(registry))),
            outcome: Mutex::new(ApplyOutcome::Applied),
            events: tx,
        });
        let cancel = CancellationToken::new();
        let task = tokio::spawn(AutoUpdater::new(fake.clone(), shared.clone()).run(cancel.clone()));
        Self {
            fake,
            shared,
            events,
            cancel,
            task,
            _dir: dir,
            path,
        }
    }

    async fn next(&mut self) -> Seen {
        self.events.recv().await.expect("driver alive")
    }

    fn jitter_ms(&self) -> u64 {
        let live = self.fake.live();
        policy::jitter(
            &self.shared.state().install_id,
            live.settings.auto.stable_jitter,
        )
        .as_millis() as u64
    }

    async fn stop(self) -> CheckState {
        self.cancel.cancel();
        self.task.await.unwrap();
        assert!(!self.shared.driving());
        store::read(&self.path).unwrap().expect("state saved")
    }
}

#[tokio::test(start_paused = true)]
async fn stable_checks_on_start_then_applies_after_delay_and_jitter() {
    let mut h = Harness::start(Channel::Stable, "1.1.0", |_| {});
    assert_eq!(h.next().await, Seen::Checked(0));
    assert_eq!(h.next().await, Seen::Notified("1.1.0".into()));
    let due = 6 * H + h.jitter_ms();
    assert_eq!(h.next().await, Seen::Applied(due, v("1.1.0")));
    let state = h.stop().await;
    assert_eq!(state.first_seen[&v("1.1.0")], BASE_MS);
    let attempt = &state.attempts[&v("1.1.0")];
    assert_eq!(attempt.outcome, AttemptOutcome::Applied);
    assert_eq!(attempt.last_at, BASE_MS + due);
    assert_eq!(state.last_notified_version, Some(v("1.1.0")));
}

#[tokio::test(start_paused = true)]
async fn beta_checks_every_interval_and_applies_what_it_finds_at_once() {
    let mut h = Harness::start(Channel::Beta, "1.0.0", |live| {
        live.settings.auto.beta_check_interval = Duration::from_secs(2 * 3600);
    });
    assert_eq!(h.next().await, Seen::Checked(0));
    assert_eq!(h.next().await, Seen::Checked(2 * H));
    h.fake.set_registry("1.1.0-beta.1");
    assert_eq!(h.next().await, Seen::Checked(4 * H));
    assert_eq!(h.next().await, Seen::Notified("1.1.0-beta.1".into()));
    assert_eq!(h.next().await, Seen::Applied(4 * H, v("1.1.0-beta.1")));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_failed_version_is_not_attempted_again_within_the_retry_interval() {
    let mut h = Harness::start(Channel::Beta, "1.1.0", |_| {});
    *h.fake.outcome.lock().unwrap() = ApplyOutcome::Failed("npm exited 1".into());
    assert_eq!(h.next().await, Seen::Checked(0));
    assert_eq!(h.next().await, Seen::Notified("1.1.0".into()));
    assert_eq!(h.next().await, Seen::Applied(0, v("1.1.0")));
    // Hourly checks go on; the failed version waits a full day.
    for hour in 1..=24 {
        assert_eq!(h.next().await, Seen::Checked(hour * H));
    }
    // Due together with the 24th check, which runs first.
    assert_eq!(h.next().await, Seen::Applied(24 * H, v("1.1.0")));
    let state = h.stop().await;
    let attempt = &state.attempts[&v("1.1.0")];
    assert_eq!(
        (attempt.count, attempt.outcome),
        (2, AttemptOutcome::Failed)
    );
    assert_eq!(attempt.reason.as_deref(), Some("npm exited 1"));
}

#[tokio::test(start_paused = true)]
async fn the_kill_switch_holds_applies_but_not_hints_and_lifting_it_applies_live() {
    let mut h = Harness::start(Channel::Beta, "1.1.0", |live| {
        live.kill_switch = KillSwitch::blocking(EnvSource::EnvFile);
    });
    assert_eq!(h.next().await, Seen::Checked(0));
    assert_eq!(
        h.next().await,
        Seen::Notified("1.1.0".into()),
        "hints still run"
    );
    assert_eq!(h.next().await, Seen::Checked(H));
    assert_eq!(h.next().await, Seen::Checked(2 * H));
    // Lifted between checks: applied at once, not at the next check.
    tokio::time::sleep(Duration::from_millis(H / 2)).await;
    h.fake.live.lock().unwrap().kill_switch = KillSwitch::default();
    h.shared.wake();
    assert_eq!(h.next().await, Seen::Applied(2 * H + H / 2, v("1.1.0")));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_git_install_checks_but_never_applies() {
    let mut h = Harness::start(Channel::Stable, "1.1.0", |live| {
        live.install = InstallMode::Git;
        live.settings.auto.stable_delay = Duration::ZERO;
        live.settings.auto.stable_jitter = Duration::ZERO;
    });
    assert_eq!(h.next().await, Seen::Checked(0));
    assert_eq!(h.next().await, Seen::Notified("1.1.0".into()));
    assert_eq!(h.next().await, Seen::Checked(24 * H));
    assert_eq!(h.next().await, Seen::Checked(48 * H));
    let state = h.stop().await;
    assert!(state.attempts.is_empty());
}

#[tokio::test(start_paused = true)]
async fn a_failed_check_is_recorded_and_retried_at_the_next_check_time() {
    let mut h = Harness::start(Channel::Stable, "1.0.0", |_| {});
    *h.fake.registry.lock().unwrap() = Err("registry unreachable".into());
    assert_eq!(h.next().await, Seen::Checked(0));
    assert_eq!(h.next().await, Seen::Checked(24 * H));
    let plan = h.shared.plan(&h.fake.live(), BASE_MS + 24 * H);
    assert_eq!(plan.next_check_at, Some(BASE_MS + 48 * H));
    let state = h.stop().await;
    assert_eq!(
        state.last_check_error.as_deref(),
        Some("registry unreachable")
    );
    assert_eq!(state.last_check_at, Some(BASE_MS + 24 * H));
}

#[tokio::test(start_paused = true)]
async fn with_hints_and_auto_off_the_registry_is_never_asked() {
    let mut h = Harness::start(Channel::Stable, "1.1.0", |live| {
        live.settings.auto.enabled = false;
        live.settings.check_on_start = false;
    });
    tokio::time::sleep(Duration::from_secs(72 * 3600)).await;
    assert!(h.events.try_recv().is_err(), "no check, no apply");
    let plan = h.shared.plan(&h.fake.live(), BASE_MS + 72 * H);
    assert_eq!((plan.next_check_at, plan.next_apply_at), (None, None));
    h.stop().await;
}

#[tokio::test(start_paused = true)]
async fn a_channel_change_is_checked_as_soon_as_the_driver_is_woken() {
    let mut h = Harness::start(Channel::Stable, "1.0.0", |_| {});
    assert_eq!(h.next().await, Seen::Checked(0));
    tokio::time::sleep(Duration::from_secs(3 * 3600)).await;
    h.fake.live.lock().unwrap().settings.channel = Channel::Beta;
    h.fake.set_registry("1.1.0-beta.2");
    h.shared.wake();
    assert_eq!(h.next().await, Seen::Checked(3 * H));
    assert_eq!(h.next().await, Seen::Notified("1.1.0-beta.2".into()));
    assert_eq!(h.next().await, Seen::Applied(3 * H, v("1.1.0-beta.2")));
    h.stop().await;
}
