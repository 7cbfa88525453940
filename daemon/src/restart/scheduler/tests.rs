//! The scheduler's rules as tables of requests and polls on a fake clock,\nand a proptest that nothing stays pending or in flight forever.

use std::cell::Cell;
use std::sync::OnceLock;

use proptest::prelude::*;
use serde_json::json;

use super::*;

fn at(ms: u64) -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now) + Duration::from_millis(ms)
}

/// Expectations are plain numbers here: the scheduler only carries them.
type Request = RestartRequest<u64>;

fn scheduler(deferral_timeout_ms: u64) -> Scheduler<u64> {
    Scheduler::new(42, RestartMode::Respawn, deferral_timeout_ms)
}

fn req(reason: &str, delay_ms: u64) -> Request {
    RestartRequest {
        delay_ms: Some(delay_ms),
        ..RestartRequest::new(reason)
    }
}

fn forced(reason: &str, delay_ms: u64, expectation: u64) -> Request {
    RestartRequest {
        skip_deferral: true,
        expectation: Some(expectation),
        ..req(reason, delay_ms)
    }
}

fn work(n: u32) -> impl FnOnce(&[RequesterId]) -> PendingWork {
    move |_| PendingWork {
        holds: n,
        ..PendingWork::default()
    }
}

fn never(_: &[RequesterId]) -> PendingWork {
    panic!("the pending-work check was consulted");
}

fn expect_fire(poll: Poll<u64>) -> Fire<u64> {
    match poll.action {
        Some(Action::Fire(fire)) => fire,
        other => panic!("expected Fire, got {other:?}"),
    }
}

fn expect_deferred(poll: Poll<u64>) -> Deferred {
    match poll.action {
        Some(Action::Deferred(deferred)) => deferred,
        other => panic!("expected Deferred, got {other:?}"),
    }
}

#[test]
fn delay_defaults_to_2s_and_is_clamped() {
    let cases = [
        (None, 2_000),
        (Some(0), 0),
        (Some(1_500), 1_500),
        (Some(60_000), 60_000),
        (Some(60_001), 60_000),
        (Some(u64::MAX), 60_000),
    ];
    for (delay_ms, want) in cases {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        let request = RestartRequest {
            delay_ms,
            ..RestartRequest::new("operator")
        };
        let r = s.request(at(0), request).unwrap();
        assert_eq!((r.delay_ms, r.fire_at), (want, at(want)), "{delay_ms:?}");
    }
}

#[test]
fn cooldown_follows_only_a_handoff() {
    // (outcome of a restart completed at 1s, request time, skip_cooldown,
    //  expected delayMs, expected cooldownMsApplied); request delay 2s.
    let failed = Outcome::Failed {
        reason: "successor exited".into(),
    };
    let rejected = Outcome::Rejected {
        reason: "restart disabled".into(),
    };
    let cases = [
        (Outcome::HandedOff, 11_000, false, 20_000, 18_000),
        (Outcome::HandedOff, 11_000, true, 2_000, 0),
        (Outcome::HandedOff, 28_000, false, 3_000, 1_000),
        (Outcome::HandedOff, 29_000, false, 2_000, 0),
        (Outcome::HandedOff, 41_000, false, 2_000, 0),
        (failed, 11_000, false, 2_000, 0),
        (rejected, 11_000, false, 2_000, 0),
    ];
    for (outcome, now, skip_cooldown, delay, cooldown) in cases {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        s.request(at(0), req("config", 0)).unwrap();
        expect_fire(s.poll(at(0), work(0)));
        s.completed(at(1_000), outcome.clone());
        let request = RestartRequest {
            skip_cooldown,
            ..req("operator", 2_000)
        };
        let r = s.request(at(now), request).unwrap();
        let case = format!("{outcome:?} at {now} skip {skip_cooldown}");
        assert_eq!(
            (r.delay_ms, r.cooldown_ms_applied),
            (delay, cooldown),
            "{case}"
        );
        assert_eq!(r.fire_at, at(now + delay), "{case}");
    }
}

#[test]
fn successor_inherits_cooldown_from_its_start() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS).with_last_restart(at(0));
    let r = s.request(at(5_000), req("operator", 0)).unwrap();
    assert_eq!((r.delay_ms, r.cooldown_ms_applied), (25_000, 25_000));
}

#[test]
fn second_request_coalesces_at_the_earlier_time() {
    // (first delay at 0, second delay at 1s, fire time)
    for (first, second, fire) in [(5_000, 1_000, 2_000), (2_000, 5_000, 2_000)] {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        assert!(!s.request(at(0), req("config", first)).unwrap().coalesced);
        let r = s.request(at(1_000), req("operator", second)).unwrap();
        assert!(r.coalesced);
        assert_eq!((r.fire_at, r.delay_ms), (at(fire), fire - 1_000));
        assert!(s.poll(at(fire - 1), never).action.is_none());
        assert_eq!(expect_fire(s.poll(at(fire), work(0))).reason, "config");
    }
}

#[test]
fn update_reasons_win_when_coalescing() {
    let cases = [
        ("config", "update.run", "update.run"),
        ("update.run", "config", "update.run"),
        ("config", "SIGUSR1", "config"),
        ("update.run", "update.auto", "update.run"),
    ];
    for (first, second, want) in cases {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        s.request(at(0), req(first, 0)).unwrap();
        let r = s.request(at(0), req(second, 0)).unwrap();
        assert_eq!(r.reason, want, "{first} + {second}");
        assert_eq!(expect_fire(s.poll(at(0), work(0))).reason, want);
    }
}

#[test]
fn the_newest_expectation_travels_with_the_fire() {
    // (first forced, first expectation, second forced, second
    // expectation, the one the fire carries): the newest one wins
    // whoever is forced, and none never erases one.
    let cases = [
        (false, Some(1), false, Some(2), Some(2)),
        (false, None, false, Some(2), Some(2)),
        (false, Some(1), true, Some(2), Some(2)),
        (false, Some(1), true, None, Some(1)),
        (true, Some(1), false, Some(2), Some(2)),
        (true, None, false, Some(2), Some(2)),
        (true, Some(1), true, Some(2), Some(2)),
        (true, Some(1), false, None, Some(1)),
    ];
    for (first_forced, first, second_forced, second, want) in cases {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        for (skip_deferral, expectation) in [(first_forced, first), (second_forced, second)] {
            let request = RestartRequest {
                skip_deferral,
                expectation,
                ..req("config", 0)
            };
            s.request(at(0), request).unwrap();
        }
        let fire = expect_fire(s.poll(at(0), work(0)));
        assert_eq!(fire.expectation, want, "{first:?} then {second:?}");
    }
}

#[test]
fn skip_deferral_never_consults_pending_work() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    let r = s.request(at(0), forced("update.run", 1_000, 1)).unwrap();
    assert_eq!((r.delay_ms, r.coalesced), (1_000, false));
    assert!(s.poll(at(999), never).action.is_none());
    let fire = expect_fire(s.poll(at(1_000), never));
    assert_eq!(
        fire,
        Fire {
            reason: "update.run".into(),
            expectation: Some(1),
            forced: true,
            pending_work: None,
        }
    );
}

#[test]
fn forced_request_upgrades_a_scheduled_deferrable_restart() {
    // (deferrable delay, forced delay, fire time): the earlier wins.
    for (deferrable, forced_delay, fire) in [(10_000, 0, 0), (2_000, 10_000, 2_000)] {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        let first = RestartRequest {
            expectation: Some(1),
            ..req("config", deferrable)
        };
        s.request(at(0), first).unwrap();
        let r = s
            .request(at(0), forced("update.run", forced_delay, 2))
            .unwrap();
        assert!(!r.coalesced);
        assert_eq!((r.fire_at, r.delay_ms), (at(fire), fire));
        let snapshot = s.snapshot(at(0));
        assert_eq!((snapshot.state, snapshot.forced), (Phase::Scheduled, true));

        let fire = expect_fire(s.poll(at(fire), never));
        assert!(fire.forced);
        assert_eq!(fire.expectation, Some(2));
    }
}

#[test]
fn forced_request_during_deferral_fires_at_once_with_the_newest_expectation() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    let stale = 1;
    let first = RestartRequest {
        expectation: Some(stale),
        ..req("config", 0)
    };
    s.request(at(0), first).unwrap();
    expect_deferred(s.poll(at(0), work(2)));
    expect_deferred(s.poll(at(500), work(2)));
    assert_eq!(s.snapshot(at(700)).state, Phase::Deferring);

    let r = s.request(at(700), forced("update.run", 5_000, 2)).unwrap();
    assert_eq!((r.coalesced, r.delay_ms), (false, 0));
    let fire = expect_fire(s.poll(at(700), never));
    assert_eq!(fire.expectation, Some(2));
    assert_eq!(s.snapshot(at(700)).state, Phase::InFlight);
}

#[test]
fn deferrable_request_joins_a_forced_restart_without_weakening_it() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    s.request(at(0), forced("update.run", 5_000, 1)).unwrap();
    let r = s.request(at(0), req("config", 1_000)).unwrap();
    assert!(r.coalesced);
    let fire = expect_fire(s.poll(at(1_000), never));
    assert_eq!((fire.forced, fire.expectation), (true, Some(1)));
}

#[test]
fn deferral_timeout_fires_with_work_still_pending() {
    let mut s = scheduler(2_000);
    s.request(at(0), req("config", 0)).unwrap();
    let mut now = at(0);
    let mut waited = Vec::new();
    let mut polls = 0..10;
    let fire = loop {
        assert!(polls.next().is_some(), "deferral never timed out");
        let poll = s.poll(now, work(3));
        match poll.action {
            Some(Action::Deferred(d)) => {
                assert_eq!((d.pending_work.total(), d.timeout_ms), (3, 2_000));
                waited.push(d.waited_ms);
                now = poll.wake_at.unwrap();
            }
            Some(Action::Fire(fire)) => break fire,
            None => panic!("deferral stalled at {now:?}"),
        }
    };
    assert_eq!(waited, [0, 500, 1_000, 1_500]);
    assert_eq!(now, at(2_000));
    assert_eq!(fire.pending_work.map(|w| w.total()), Some(3));
}

#[test]
fn deferral_timeout_zero_waits_forever() {
    let mut s = scheduler(0);
    s.request(at(0), req("config", 0)).unwrap();
    let mut now = at(0);
    for _ in 0..7_200 {
        let poll = s.poll(now, work(1));
        assert_eq!(expect_deferred(poll.clone()).timeout_ms, 0);
        now = poll.wake_at.unwrap();
    }
    assert_eq!(now, at(3_600_000));
    assert_eq!(expect_fire(s.poll(now, work(0))).pending_work, None);
}

#[test]
fn new_deferral_timeout_applies_to_a_running_deferral() {
    let mut s = scheduler(0);
    s.request(at(0), req("config", 0)).unwrap();
    expect_deferred(s.poll(at(0), work(1)));
    s.set_deferral_timeout(400);
    let wake = s.next_wake().unwrap();
    assert!(expect_fire(s.poll(wake, work(1))).pending_work.is_some());
}

#[test]
fn deferral_excludes_requesters_and_checks_only_when_due() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    for id in [7, 8, 7] {
        let request = RestartRequest {
            requester: Some(RequesterId(id)),
            ..req("config", 0)
        };
        s.request(at(0), request).unwrap();
    }
    let seen = Cell::new(0);
    let check = |requesters: &[RequesterId]| {
        assert_eq!(requesters, [RequesterId(7), RequesterId(8)]);
        seen.set(seen.get() + 1);
        PendingWork {
            in_flight_requests: 1,
            ..PendingWork::default()
        }
    };
    let poll = s.poll(at(0), check);
    expect_deferred(poll.clone());
    assert_eq!(poll.wake_at, Some(at(500)));
    // Polling between checks (e.g. after an unrelated event) is a no-op.
    assert!(s.poll(at(499), never).action.is_none());
    expect_deferred(s.poll(at(500), check));
    assert_eq!(seen.get(), 2);
    assert_eq!(expect_fire(s.poll(at(1_000), work(0))).pending_work, None);
}

#[test]
fn every_outcome_clears_in_flight_state() {
    let cases = [
        (Outcome::HandedOff, 30_000),
        (
            Outcome::Failed {
                reason: "successor not ready".into(),
            },
            0,
        ),
        (
            Outcome::Rejected {
                reason: "restart disabled".into(),
            },
            0,
        ),
    ];
    for (outcome, cooldown) in cases {
        let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
        s.request(at(0), req("config", 0)).unwrap();
        expect_fire(s.poll(at(0), work(0)));

        let in_flight = Err(Rejected::InFlight {
            reason: "config".into(),
        });
        assert_eq!(s.request(at(10), req("operator", 0)), in_flight);
        assert_eq!(s.request(at(10), forced("update.run", 0, 1)), in_flight);
        let poll = s.poll(at(10), never);
        assert_eq!((poll.action, poll.wake_at), (None, None));

        s.completed(at(1_000), outcome.clone());
        assert_eq!(s.snapshot(at(1_000)).state, Phase::Idle, "{outcome:?}");
        let r = s.request(at(1_000), req("operator", 0)).unwrap();
        assert!(!r.coalesced, "{outcome:?}");
        assert_eq!(
            (r.reason.as_str(), r.cooldown_ms_applied),
            ("operator", cooldown)
        );
        assert_eq!(expect_fire(s.poll(r.fire_at, work(0))).reason, "operator");
    }
}

#[test]
fn stale_completion_is_ignored() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    s.request(at(0), req("config", 5_000)).unwrap();
    s.completed(at(100), Outcome::HandedOff);
    assert_eq!(s.snapshot(at(100)).state, Phase::Scheduled);
    expect_fire(s.poll(at(5_000), work(0)));
    s.completed(at(5_100), Outcome::HandedOff);
    // The ignored report did not start a cooldown; the real one did.
    let r = s.request(at(5_100), req("operator", 0)).unwrap();
    assert_eq!(r.cooldown_ms_applied, 30_000);
}

#[test]
fn snapshot_follows_the_state() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    assert_eq!(s.snapshot(at(0)).state, Phase::Idle);

    s.request(at(0), req("config", 2_000)).unwrap();
    assert_eq!(
        serde_json::to_value(s.snapshot(at(500))).unwrap(),
        json!({"state": "scheduled", "reason": "config", "forced": false,
                   "fireInMs": 1_500, "deferredMs": null})
    );

    expect_deferred(s.poll(at(2_000), work(1)));
    let snapshot = s.snapshot(at(2_300));
    assert_eq!(snapshot.state, Phase::Deferring);
    assert_eq!(snapshot.deferred_since, Some(at(2_000)));
    assert_eq!(snapshot.deferred_ms, Some(300));

    expect_fire(s.poll(at(2_500), work(0)));
    let snapshot = s.snapshot(at(2_500));
    assert_eq!(serde_json::to_value(snapshot.state).unwrap(), "in-flight");
    assert_eq!(snapshot.reason.as_deref(), Some("config"));
}

#[test]
fn wire_payloads_are_camel_case() {
    let mut s = scheduler(DEFAULT_DEFERRAL_TIMEOUT_MS);
    let r = s.request(at(0), RestartRequest::new("config")).unwrap();
    assert_eq!(
        serde_json::to_value(r.to_wire()).unwrap(),
        json!({"ok": true, "pid": 42, "delayMs": 2_000, "reason": "config",
                   "mode": "respawn", "coalesced": false, "cooldownMsApplied": 0})
    );
    let deferred = Deferred {
        pending_work: PendingWork {
            in_flight_requests: 1,
            holds: 2,
            update_steps: 0,
        },
        waited_ms: 500,
        timeout_ms: 300_000,
    };
    assert_eq!(
        serde_json::to_value(deferred).unwrap(),
        json!({"pendingWork": {"inFlightRequests": 1, "holds": 2, "updateSteps": 0},
                   "waitedMs": 500, "timeoutMs": 300_000})
    );
}

/// What a driver does to the scheduler.
#[derive(Debug, Clone)]
enum Op {
    Request(Request),
    Advance(u64),
    Work(PendingWork),
    Complete(Outcome),
    SetTimeout(u64),
}

fn request_strategy() -> impl Strategy<Value = Request> {
    (
        prop_oneof![Just("update.run"), Just("config"), Just("SIGUSR1")],
        prop_oneof![Just(None), (0u64..70_000).prop_map(Some)],
        any::<bool>(),
        any::<bool>(),
        proptest::option::of(0u64..3),
        proptest::option::of(0u64..1_000),
    )
        .prop_map(
            |(reason, delay_ms, skip_deferral, skip_cooldown, requester, expectation)| {
                RestartRequest {
                    reason: reason.into(),
                    delay_ms,
                    skip_deferral,
                    skip_cooldown,
                    requester: requester.map(RequesterId),
                    expectation,
                }
            },
        )
}

fn outcome_strategy() -> impl Strategy<Value = Outcome> {
    prop_oneof![
        Just(Outcome::HandedOff),
        Just(Outcome::Failed {
            reason: "successor exited".into()
        }),
        Just(Outcome::Rejected {
            reason: "refused".into()
        }),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        request_strategy().prop_map(Op::Request),
        (0u64..20_000).prop_map(Op::Advance),
        (0u32..3, 0u32..2, 0u32..2).prop_map(|(r, h, u)| Op::Work(PendingWork {
            in_flight_requests: r,
            holds: h,
            update_steps: u,
        })),
        outcome_strategy().prop_map(Op::Complete),
        prop_oneof![Just(0u64), 1u64..5_000].prop_map(Op::SetTimeout),
    ]
}

/// Drives the scheduler the way the async driver does: poll after every
/// event and at every wake-up, and complete every fired restart.
struct Driver {
    s: Scheduler<u64>,
    now: Instant,
    work: PendingWork,
    in_flight: bool,
}

impl Driver {
    fn poll(&mut self) {
        let forced = self.s.snapshot(self.now).forced;
        let consulted = Cell::new(false);
        let work = self.work;
        let poll = self.s.poll(self.now, |_| {
            consulted.set(true);
            work
        });
        assert!(
            !(forced && consulted.get()),
            "forced restart consulted pending work"
        );
        match poll.action {
            Some(Action::Fire(_)) => {
                assert!(!self.in_flight, "fired twice");
                self.in_flight = true;
            }
            Some(Action::Deferred(d)) => assert!(d.pending_work.total() > 0),
            None => {}
        }
        let state = self.s.snapshot(self.now).state;
        assert_eq!(state == Phase::InFlight, self.in_flight);
        // A pending restart always has a wake-up, and it is in the future.
        match state {
            Phase::Scheduled | Phase::Deferring => {
                assert!(
                    poll.wake_at.is_some_and(|w| w > self.now),
                    "{state:?} stuck"
                );
            }
            Phase::Idle | Phase::InFlight => assert_eq!(poll.wake_at, None),
        }
    }

    fn advance_to(&mut self, to: Instant) {
        while let Some(wake) = self.s.next_wake()
            && wake <= to
        {
            self.now = wake;
            self.poll();
        }
        self.now = to;
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Request(request) => {
                let result = self.s.request(self.now, request);
                assert_eq!(result.is_err(), self.in_flight, "{result:?}");
                if let Ok(r) = result {
                    let bound = MAX_DELAY_MS + COOLDOWN.as_millis() as u64;
                    assert!(r.delay_ms <= bound);
                }
                self.poll();
            }
            Op::Advance(ms) => self.advance_to(self.now + Duration::from_millis(ms)),
            Op::Work(work) => {
                self.work = work;
                self.poll();
            }
            Op::Complete(outcome) => {
                let before = self.s.snapshot(self.now);
                self.s.completed(self.now, outcome);
                if self.in_flight {
                    self.in_flight = false;
                    assert_eq!(self.s.snapshot(self.now).state, Phase::Idle);
                } else {
                    assert_eq!(
                        self.s.snapshot(self.now),
                        before,
                        "stale completion applied"
                    );
                }
                self.poll();
            }
            Op::SetTimeout(ms) => self.s.set_deferral_timeout(ms),
        }
    }
}

proptest! {
    #[test]
    fn no_restart_stays_pending_or_in_flight_forever(
        timeout in prop_oneof![Just(0u64), 1u64..5_000],
        ops in proptest::collection::vec(op_strategy(), 0..60),
        last in request_strategy(),
        outcome in outcome_strategy(),
    ) {
        let mut d = Driver {
            s: scheduler(timeout),
            now: at(0),
            work: PendingWork::default(),
            in_flight: false,
        };
        for op in ops {
            d.apply(op);
        }
        if d.in_flight {
            d.apply(Op::Complete(outcome.clone()));
        }
        d.apply(Op::Work(PendingWork::default()));

        let was_idle = d.s.snapshot(d.now).state == Phase::Idle;
        let r = d.s.request(d.now, last);
        prop_assert!(r.as_ref().is_ok_and(|r| !(was_idle && r.coalesced)), "{r:?}");
        d.poll();
        d.advance_to(d.now + Duration::from_millis(MAX_DELAY_MS) + COOLDOWN + POLL_INTERVAL);
        prop_assert!(d.in_flight, "restart never fired: {:?}", d.s.snapshot(d.now));

        d.apply(Op::Complete(outcome));
        prop_assert_eq!(d.s.snapshot(d.now).state, Phase::Idle);
        prop_assert_eq!(d.s.next_wake(), None);
    }
}
