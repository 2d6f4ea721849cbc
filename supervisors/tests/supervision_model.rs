//! Property: for random failure schedules, the supervisor stops and restarts exactly the
//! children `SUPERVISION.md` says, in the order it says, and escalates exactly when the
//! restart intensity is exceeded. Time is a `ManualClock`: the test moves it by hand.

mod common;

use axon_supervisors::*;
use common::wait_until;
use quickcheck::{Arbitrary, Gen, QuickCheck};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Start(usize),
    Stop(usize),
}

type Log = Arc<Mutex<Vec<Ev>>>;

struct Probe {
    idx: usize,
    log: Log,
}

impl Worker for Probe {
    type Request = ();
    type Response = ();
    fn handle(&mut self, _: (), _: &mut WorkerContext) -> Result<(), WorkerError> {
        Ok(())
    }
    fn stopped(&mut self) {
        self.log.lock().unwrap().push(Ev::Stop(self.idx));
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Panic,
    Error,
    NormalExit,
    /// An operator restarts the child (`POST /v1/supervision/{actor}/restart`).
    OperatorRestart,
}

#[derive(Clone, Debug)]
struct Step {
    child: usize,
    kind: Kind,
    gap_ms: u64,
}

#[derive(Clone, Debug)]
struct Case {
    strategy: Strategy,
    restarts: Vec<RestartType>,
    max_restarts: u32,
    steps: Vec<Step>,
}

impl Arbitrary for Case {
    fn arbitrary(g: &mut Gen) -> Self {
        let n = 1 + usize::arbitrary(g) % 5;
        let restarts = (0..n)
            .map(|_| {
                *g.choose(&[
                    RestartType::Permanent,
                    RestartType::Permanent,
                    RestartType::Transient,
                    RestartType::Temporary,
                ])
                .unwrap()
            })
            .collect();
        let steps = (0..1 + usize::arbitrary(g) % 12)
            .map(|_| Step {
                child: usize::arbitrary(g) % n,
                kind: *g
                    .choose(&[
                        Kind::Panic,
                        Kind::Error,
                        Kind::NormalExit,
                        Kind::OperatorRestart,
                    ])
                    .unwrap(),
                gap_ms: *g.choose(&[0, 100, 700, 1500, 2600, 6000]).unwrap(),
            })
            .collect();
        Case {
            strategy: *g
                .choose(&[
                    Strategy::OneForOne,
                    Strategy::OneForAll,
                    Strategy::RestForOne,
                ])
                .unwrap(),
            restarts,
            max_restarts: u32::arbitrary(g) % 5,
            steps,
        }
    }
}

const PERIOD: Duration = Duration::from_secs(5);

/// Jitter of up to half the delay: the model checks each delay lies within it (and that
/// there is jitter at all), and learns the delay drawn from the clock.
const RANDOM_FACTOR: f64 = 0.5;

fn policy() -> BackoffPolicy {
    BackoffPolicy::new(
        Duration::from_millis(10),
        Duration::from_millis(40),
        RANDOM_FACTOR,
    )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Running,
    Stopped,
    Removed,
}

/// What the contract says happens after one failure.
enum Outcome {
    /// Nothing restarts (a temporary child, or a transient one's normal exit).
    Final,
    /// These children restart, in this order, after this delay.
    Restart(Vec<usize>, Duration),
    Escalate,
}

/// The reference model, written from `SUPERVISION.md` alone.
struct Model {
    strategy: Strategy,
    restarts: Vec<RestartType>,
    max_restarts: u32,
    state: Vec<M>,
    history: VecDeque<Duration>,
    /// Per child, written from the contract: its consecutive failures, and when it last
    /// started (the count resets once it has run `reset_after` from there).
    failures: Vec<u32>,
    started_at: Vec<Option<Duration>>,
    restarts_total: Vec<u64>,
}

/// The contract's backoff before jitter: `min(max, min × 2^n)`.
fn model_delay(n: u32) -> Duration {
    let p = policy();
    let mut d = p.min;
    for _ in 0..n {
        d = (d * 2).min(p.max);
    }
    d.min(p.max)
}

impl Model {
    fn fail(&mut self, i: usize, kind: Kind, now: Duration, log: &mut Vec<Ev>) -> Outcome {
        log.push(Ev::Stop(i));
        let abnormal = kind != Kind::NormalExit;
        match self.restarts[i] {
            RestartType::Temporary => {
                self.state[i] = M::Removed;
                return Outcome::Final;
            }
            RestartType::Transient if !abnormal => {
                self.state[i] = M::Stopped;
                return Outcome::Final;
            }
            _ => {}
        }
        self.history.retain(|t| now - *t < PERIOD);
        let n = self.state.len();
        if self.history.len() + 1 > self.max_restarts as usize {
            self.state[i] = M::Stopped;
            for j in (0..n).rev() {
                if self.state[j] == M::Running {
                    log.push(Ev::Stop(j));
                    self.state[j] = M::Stopped;
                }
            }
            return Outcome::Escalate;
        }
        self.history.push_back(now);
        let affected: Vec<usize> = match self.strategy {
            Strategy::OneForOne => vec![i],
            Strategy::OneForAll => (0..n).collect(),
            Strategy::RestForOne => (i..n).collect(),
        };
        let mut set = vec![];
        for &j in affected.iter().rev() {
            if j != i && self.state[j] == M::Running {
                log.push(Ev::Stop(j));
            }
        }
        for &j in &affected {
            if j == i {
                set.push(j);
            } else if self.state[j] == M::Running {
                if self.restarts[j] == RestartType::Temporary {
                    self.state[j] = M::Removed;
                } else {
                    set.push(j);
                }
            }
        }
        if self.started_at[i].is_some_and(|t| now - t >= policy().reset_after) {
            self.failures[i] = 0;
        }
        let delay = model_delay(self.failures[i]);
        self.failures[i] += 1;
        for &j in &set {
            self.restarts_total[j] += 1;
            self.state[j] = M::Running;
            self.started_at[j] = Some(now + delay);
        }
        Outcome::Restart(set, delay)
    }
}

fn run_case(case: Case) -> bool {
    actix::System::new().block_on(async move { check(case).await });
    true
}

async fn check(case: Case) {
    let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
    let env = Env::new(&prometheus::Registry::new(), Arc::new(clock.clone()), 1).unwrap();
    let log: Log = Arc::default();
    let n = case.restarts.len();
    let mut children = vec![];
    let mut refs = vec![];
    for (idx, restart) in case.restarts.iter().enumerate() {
        let log2 = log.clone();
        let (spec, r) = worker(
            &env,
            WorkerSpec {
                id: format!("c{idx}"),
                restart: *restart,
                shutdown: Shutdown::Timeout(Duration::from_secs(5)),
                mailbox_capacity: 4,
                factory: move || {
                    log2.lock().unwrap().push(Ev::Start(idx));
                    Ok(Probe {
                        idx,
                        log: log2.clone(),
                    })
                },
            },
        );
        children.push(spec);
        refs.push(r);
    }
    let mut root = start_root(
        &env,
        SupervisorSpec {
            id: "sup".into(),
            strategy: case.strategy,
            intensity: Intensity {
                max_restarts: case.max_restarts,
                period: PERIOD,
            },
            backoff: policy(),
            command_capacity: 4,
            children,
        },
    )
    .await
    .unwrap();

    let mut model = Model {
        strategy: case.strategy,
        restarts: case.restarts.clone(),
        max_restarts: case.max_restarts,
        state: vec![M::Running; n],
        history: VecDeque::new(),
        failures: vec![0; n],
        started_at: vec![Some(Duration::ZERO); n],
        restarts_total: vec![0; n],
    };
    let mut expected: Vec<Ev> = (0..n).map(Ev::Start).collect();
    assert_eq!(*log.lock().unwrap(), expected, "initial start order");
    let opts = CallOptions {
        deadline: Duration::from_secs(5),
        correlation_id: None,
    };

    for step in &case.steps {
        let i = step.child;
        if model.state[i] != M::Running {
            continue;
        }
        let fault = match step.kind {
            Kind::Panic => Fault::Panic,
            Kind::Error => Fault::Error,
            Kind::NormalExit => Fault::Exit,
            Kind::OperatorRestart => {
                // The contract: the child is stopped and started again at once, its
                // restarts count one more (outside the intensity window), its siblings
                // are untouched, and its run counts from the new start.
                let done =
                    supervisor::restart_actor(&root.node, &format!("c{i}"), Duration::from_secs(5))
                        .await;
                assert!(done.is_ok(), "{done:?} in {case:?}");
                expected.extend([Ev::Stop(i), Ev::Start(i)]);
                model.restarts_total[i] += 1;
                model.started_at[i] = Some(clock.now());
                assert_eq!(*log.lock().unwrap(), expected, "after {step:?} in {case:?}");
                clock.advance(Duration::from_millis(step.gap_ms));
                continue;
            }
        };
        env.faults.inject(&format!("c{i}"), fault, Some(1));
        let answer = refs[i].call((), &opts).await;
        assert_eq!(answer.is_ok(), step.kind == Kind::NormalExit, "{answer:?}");

        let now = clock.now();
        match model.fail(i, step.kind, now, &mut expected) {
            Outcome::Escalate => {
                let exit = actix_rt::time::timeout(Duration::from_secs(5), &mut root.exit)
                    .await
                    .unwrap_or_else(|_| {
                        panic!("no escalation in {case:?}; log {:?}", log.lock().unwrap())
                    })
                    .unwrap();
                match exit {
                    Exit::Failed(reason) => {
                        assert!(reason.contains("restart intensity exceeded"), "{reason}")
                    }
                    other => panic!("expected escalation, got {other:?}"),
                }
                assert_eq!(*log.lock().unwrap(), expected, "escalation in {case:?}");
                assert_eq!(root.node.status(), NodeStatus::Failed);
                return;
            }
            Outcome::Final => {
                let node = refs[i].node().clone();
                let root_node = root.node.clone();
                let id = format!("c{i}");
                wait_until("the child is final", || match model.state[i] {
                    M::Removed => root_node.children().iter().all(|c| c.id != id),
                    _ => node.status() == NodeStatus::Stopped,
                })
                .await;
            }
            Outcome::Restart(set, base) => {
                let nodes: Vec<_> = set.iter().map(|j| refs[*j].node().clone()).collect();
                let c = clock.clone();
                wait_until("the restart waits for its backoff", || {
                    nodes.iter().all(|n| n.status() == NodeStatus::Restarting)
                        && c.next_deadline().is_some_and(|d| d > now)
                })
                .await;
                // The delay is the base times (1 + r), r in [0, random_factor]: never less,
                // never more, and jittered (r is 0 with probability nil).
                let delay = clock.next_deadline().unwrap() - now;
                assert!(
                    delay > base && delay <= base.mul_f64(1.0 + RANDOM_FACTOR),
                    "a backoff of {delay:?} for a base of {base:?} in {case:?}"
                );
                for &j in &set {
                    model.started_at[j] = Some(now + delay);
                }
                // Backoff delays the restart: nothing has started yet.
                let stops_only = log.lock().unwrap().clone();
                assert_eq!(
                    stops_only, expected,
                    "stops before the backoff ends in {case:?}"
                );
                clock.advance(delay);
                expected.extend(set.iter().map(|j| Ev::Start(*j)));
                wait_until("the restarted children run", || {
                    nodes.iter().all(|n| n.status() == NodeStatus::Running)
                })
                .await;
            }
        }
        assert_eq!(*log.lock().unwrap(), expected, "after {step:?} in {case:?}");
        clock.advance(Duration::from_millis(step.gap_ms));
    }

    for (j, r) in refs.iter().enumerate() {
        assert_eq!(
            r.node().restarts_total(),
            model.restarts_total[j],
            "restarts of c{j}"
        );
    }
    // A slow child at shutdown: the graceful stop waits (within its shutdown timeout) for
    // the request it is handling, which is answered, not killed.
    let slow = (0..n).rev().find(|j| model.state[*j] == M::Running);
    let in_flight = slow.map(|k| {
        env.faults.inject(
            &format!("c{k}"),
            Fault::Delay(Duration::from_secs(1)),
            Some(1),
        );
        let (r, o) = (refs[k].clone(), opts.clone());
        actix::spawn(async move { r.call((), &o).await })
    });
    if in_flight.is_some() {
        let c = clock.clone();
        wait_until("the slow child holds its request", || c.sleepers() == 1).await;
    }
    root.stop(StopLevel::Graceful);
    if let Some(call) = in_flight {
        let c = clock.clone();
        wait_until("the stop waits out its shutdown timeout", || {
            c.sleepers() == 2
        })
        .await;
        clock.advance(Duration::from_secs(1));
        assert_eq!(
            call.await.unwrap(),
            Ok(()),
            "the request in flight at a graceful stop in {case:?}"
        );
    }
    let exit = actix_rt::time::timeout(Duration::from_secs(5), &mut root.exit)
        .await
        .expect("the tree stops")
        .unwrap();
    assert_eq!(exit, Exit::Shutdown);
    for j in (0..n).rev() {
        if model.state[j] == M::Running {
            expected.push(Ev::Stop(j));
        }
    }
    assert_eq!(*log.lock().unwrap(), expected, "shutdown order in {case:?}");
}

#[test]
fn restarts_follow_the_contract() {
    QuickCheck::new()
        .tests(200)
        .quickcheck(run_case as fn(Case) -> bool);
}

#[test]
fn backoff_delays_grow_and_intensity_still_applies() {
    // One permanent child failing in a loop: delays of 10, 20, 40 ms (each with up to half
    // again of jitter), then escalation.
    let case = Case {
        strategy: Strategy::OneForOne,
        restarts: vec![RestartType::Permanent],
        max_restarts: 3,
        steps: (0..4)
            .map(|_| Step {
                child: 0,
                kind: Kind::Panic,
                gap_ms: 0,
            })
            .collect(),
    };
    run_case(case);
}
