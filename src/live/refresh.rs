//! The shard's refresh loop: runs dirty live queries against the database.

use std::cell::RefCell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

use futures_lite::future;
use glommio::sync::Semaphore;
use glommio::timer::sleep;

use super::registry::{Job, Outcome, Registry};
use crate::permits;
use crate::protocol::GraphQLError;

/// What running a refresh produced.
pub enum RunResult {
    /// The `data` JSON.
    Data(String),
    /// The query cannot succeed (permission denied, table gone): end the live query.
    Failed(Rc<[GraphQLError]>),
    /// The database could not be reached; the refresh is retried after a pause.
    Unavailable,
}

/// Runs refreshes' statements, each as its own role and claims. Boxed: one allocation per
/// call, shared by all of the live queries' subscribers.
pub trait Runner {
    /// Runs `jobs` (at least one) and answers each, in order: in one round trip, each in
    /// a transaction of its own, when the runner can.
    fn run<'a>(&'a self, jobs: &'a [Job]) -> Pin<Box<dyn Future<Output = Vec<RunResult>> + 'a>>;

    /// How long handing one result to every subscriber's outbox took.
    fn fanned_out(&self, took: std::time::Duration);
}

/// How the loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Window in which changes are gathered into one refresh per live query.
    pub tick: Duration,
    /// Refreshes of standing subscribers running at once on the shard: one less than its
    /// pool, so that they never hold every connection.
    pub concurrency: usize,
    /// Pause before a refresh that found the database unreachable is tried again.
    pub retry_after: Duration,
    /// Refreshes of standing subscribers that one slot sends in one round trip.
    pub batch: usize,
}

/// Refreshes dirty live queries for as long as the shard runs.
///
/// Two kinds of refresh share the shard's pool, scheduled so that slow live queries cannot
/// starve the rest:
/// - one that brings subscribers their first result runs in the turn of the first waiting
///   subscriber's connection ([`Outbox::db_turn`](crate::outbox::Outbox::db_turn)):
///   a client subscribing many slow queries waits for its own earlier ones, never for
///   another client's;
/// - those for standing subscribers take one of `concurrency` slots per `batch` of them,
///   sent in one round trip, which leaves a connection of the pool to queries and first
///   results.
///
/// Every statement ends by `POSTRUST_STATEMENT_TIMEOUT_MS` at the latest, so a slot or a
/// turn is held for at most that long.
pub async fn run(registry: Rc<RefCell<Registry>>, runner: Rc<dyn Runner>, pacing: Pacing) {
    // One permit per refresh of standing subscribers in flight.
    let slots = Rc::new(Semaphore::new(pacing.concurrency.max(1) as u64));
    loop {
        future::poll_fn(|cx| registry.borrow_mut().poll_dirty(cx)).await;
        // Changes that arrive in this window join the same refresh. With no window, still
        // let the changes already queued on this shard land first. Changes that arrive while
        // a refresh runs are coalesced anyway: they queue exactly one more refresh.
        if pacing.tick.is_zero() {
            future::yield_now().await;
        } else {
            sleep(pacing.tick).await;
        }
        loop {
            // First results never wait for a slot, only for their own connection's turn.
            loop {
                // Not borrowed across the spawn, which may start the task at once.
                let next = registry.borrow_mut().take_first();
                let Some(job) = next else {
                    break;
                };
                let (registry, runner) = (Rc::clone(&registry), Rc::clone(&runner));
                glommio::spawn_local(async move {
                    // A live query that goes while waiting for the turn never runs. (A
                    // first-lane job always has an owner: its live query has a waiting
                    // subscriber, or it is gone.)
                    // Its own handle on the owner: the turn borrows it while the job
                    // moves into the refresh.
                    let owner = job.owner.clone();
                    let turn = future::or(
                        async {
                            match &owner {
                                Some(owner) => Some(owner.db_turn().await),
                                None => Some(None),
                            }
                        },
                        async {
                            job.abandoned.wait().await;
                            None
                        },
                    )
                    .await;
                    let Some(turn) = turn else {
                        return;
                    };
                    let retry = refresh(&registry, &*runner, vec![job]).await;
                    drop(turn);
                    retry_later(&registry, retry, pacing).await;
                })
                .detach();
            }
            if !registry.borrow_mut().has_standing() {
                break;
            }
            // A slot, unless first results arrive meanwhile: they go first.
            let slot = future::or(
                async { Some(permits::acquire_static(&slots).await) },
                async {
                    future::poll_fn(|cx| registry.borrow_mut().poll_first(cx)).await;
                    None
                },
            )
            .await;
            let slot = match slot {
                None => continue,
                Some(Err(_)) => return,
                Some(Ok(slot)) => slot,
            };
            let jobs: Vec<Job> = {
                let mut registry = registry.borrow_mut();
                std::iter::from_fn(|| registry.take_standing())
                    .take(pacing.batch.max(1))
                    .collect()
            };
            if jobs.is_empty() {
                break;
            }
            let (registry, runner) = (Rc::clone(&registry), Rc::clone(&runner));
            glommio::spawn_local(async move {
                let retry = refresh(&registry, &*runner, jobs).await;
                drop(slot);
                retry_later(&registry, retry, pacing).await;
            })
            .detach();
        }
    }
}

/// Runs refreshes and records their outcomes, except for live queries that went
/// meanwhile. When all of them went, the statements are dropped mid-way (the pool cancels
/// them). Returns the refreshes that found the database unavailable, to be tried again.
async fn refresh(registry: &RefCell<Registry>, runner: &dyn Runner, jobs: Vec<Job>) -> Vec<Job> {
    // Gone already (while waiting for a slot or a turn): send nothing for them.
    let jobs: Vec<Job> = jobs
        .into_iter()
        .filter(|job| !job.abandoned.is_set())
        .collect();
    if jobs.is_empty() {
        return jobs;
    }
    let results = future::or(async { Some(runner.run(&jobs).await) }, async {
        // A flag once set stays set: waiting for each in turn ends when all are.
        for job in &jobs {
            job.abandoned.wait().await;
        }
        None
    })
    .await;
    let Some(results) = results else {
        return Vec::new();
    };
    let mut retry = Vec::new();
    for (job, result) in jobs.into_iter().zip(results) {
        if job.abandoned.is_set() {
            continue;
        }
        match result {
            RunResult::Data(data) => {
                let started = std::time::Instant::now();
                registry.borrow_mut().finish(job.id, Outcome::Data(data));
                runner.fanned_out(started.elapsed());
            }
            RunResult::Failed(errors) => {
                let failed = registry
                    .borrow_mut()
                    .finish(job.id, Outcome::Failed(Rc::clone(&errors)));
                for (outbox, slot) in failed {
                    outbox.fail(slot, Rc::clone(&errors));
                }
            }
            RunResult::Unavailable => retry.push(job),
        }
    }
    retry
}

/// After a pause (holding neither a slot nor a turn), queues again the refreshes that found
/// the database unavailable, of the live queries still there.
async fn retry_later(registry: &RefCell<Registry>, retry: Vec<Job>, pacing: Pacing) {
    if retry.is_empty() {
        return;
    }
    sleep(pacing.retry_after).await;
    let mut registry = registry.borrow_mut();
    for job in retry {
        if !job.abandoned.is_set() {
            registry.retry(job.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::QualifiedName;
    use crate::live::{Compiled, LiveKey};
    use crate::outbox::Outbox;
    use std::cell::Cell;
    use std::collections::VecDeque;

    /// Answers refreshes from a script and counts them.
    struct Scripted {
        answers: RefCell<VecDeque<RunResult>>,
        calls: Cell<usize>,
        /// How many refreshes each call to `run` carried.
        batches: RefCell<Vec<usize>>,
    }

    impl Runner for Scripted {
        fn run<'a>(
            &'a self,
            jobs: &'a [Job],
        ) -> Pin<Box<dyn Future<Output = Vec<RunResult>> + 'a>> {
            self.batches.borrow_mut().push(jobs.len());
            let answers: Vec<RunResult> = jobs
                .iter()
                .map(|_| {
                    self.calls.set(self.calls.get() + 1);
                    self.answers
                        .borrow_mut()
                        .pop_front()
                        .unwrap_or(RunResult::Data("{}".into()))
                })
                .collect();
            Box::pin(async move { answers })
        }

        fn fanned_out(&self, _took: Duration) {}
    }

    fn frames(outbox: &Outbox) -> usize {
        let mut out = Vec::new();
        outbox.fill(&mut out, usize::MAX);
        let mut n = 0;
        let mut rest = &out[..];
        while !rest.is_empty() {
            let len = rest[1] as usize;
            rest = &rest[2 + len..];
            n += 1;
        }
        n
    }

    #[test]
    fn refreshes_coalesce_retry_and_fail() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .spawn(|| async {
                let registry = Rc::new(RefCell::new(Registry::default()));
                let runner = Rc::new(Scripted {
                    answers: RefCell::new(VecDeque::from([
                        RunResult::Data("{\"v\":1}".into()),
                        RunResult::Unavailable,
                        RunResult::Data("{\"v\":2}".into()),
                        RunResult::Failed(Rc::from(vec![GraphQLError::server(
                            crate::protocol::ErrorCode::Forbidden,
                            "denied",
                        )])),
                    ])),
                    calls: Cell::new(0),
                    batches: RefCell::default(),
                });
                let pacing = Pacing {
                    tick: Duration::from_millis(20),
                    concurrency: 2,
                    retry_after: Duration::from_millis(30),
                    batch: 4,
                };
                let dyn_runner: Rc<dyn Runner> = runner.clone();
                glommio::spawn_local(run(Rc::clone(&registry), dyn_runner, pacing)).detach();

                let outbox = Rc::new(Outbox::default());
                let slot = outbox.open_slot(b"P");
                registry
                    .borrow_mut()
                    .subscribe(key("select"), &outbox, slot);
                sleep(Duration::from_millis(60)).await;
                assert_eq!(runner.calls.get(), 1, "the initial refresh");
                assert_eq!(frames(&outbox), 1);

                // Three changes inside one tick: one refresh. It finds the database gone,
                // waits, and is retried.
                for _ in 0..3 {
                    registry.borrow_mut().mark_table(None, "orders");
                }
                sleep(Duration::from_millis(150)).await;
                assert_eq!(
                    runner.calls.get(),
                    3,
                    "one coalesced refresh, then its retry"
                );
                assert_eq!(frames(&outbox), 1, "the retried refresh's new result");

                registry.borrow_mut().mark_table(None, "orders");
                sleep(Duration::from_millis(60)).await;
                assert_eq!(runner.calls.get(), 4);
                match outbox.take_event() {
                    Some(crate::outbox::OpEvent::Failed {
                        slot: failed,
                        errors,
                    }) => {
                        assert_eq!((failed, errors[0].code.as_str()), (slot, "FORBIDDEN"))
                    }
                    other => panic!("the subscriber was not failed: {other:?}"),
                }
                assert!(registry.borrow().is_empty());
            })
            .unwrap()
            .join()
            .unwrap();
    }

    /// A live query of `public.orders` whose statement is `sql`.
    fn key(sql: &str) -> LiveKey {
        LiveKey {
            compiled: Rc::new(Compiled {
                sql: sql.into(),
                params: vec![],
                tables: vec![QualifiedName {
                    schema: "public".into(),
                    name: "orders".into(),
                }],
                skip: Default::default(),
                multiplexed: Default::default(),
                alone: Default::default(),
            }),
            role: None,
            claims: "{}".into(),
        }
    }

    #[test]
    fn standing_refreshes_go_in_batches_and_each_answer_reaches_its_own_subscribers() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .spawn(|| async {
                let registry = Rc::new(RefCell::new(Registry::default()));
                let runner = Rc::new(Scripted {
                    answers: RefCell::default(),
                    calls: Cell::new(0),
                    batches: RefCell::default(),
                });
                let pacing = Pacing {
                    tick: Duration::from_millis(20),
                    concurrency: 1,
                    retry_after: Duration::from_millis(30),
                    batch: 4,
                };
                let dyn_runner: Rc<dyn Runner> = runner.clone();
                glommio::spawn_local(run(Rc::clone(&registry), dyn_runner, pacing)).detach();
                let outboxes: Vec<(Rc<Outbox>, _)> = (0..6)
                    .map(|i| {
                        let outbox = Rc::new(Outbox::default());
                        let slot = outbox.open_slot(b"P");
                        registry
                            .borrow_mut()
                            .subscribe(key(&format!("q{i}")), &outbox, slot);
                        (outbox, slot)
                    })
                    .collect();
                sleep(Duration::from_millis(60)).await;
                assert_eq!(
                    *runner.batches.borrow(),
                    [1; 6],
                    "first results run alone, in their connections' turns"
                );
                for (outbox, _) in &outboxes {
                    assert_eq!(frames(outbox), 1);
                }

                // One change to the table they all read: six standing refreshes, four in
                // the first round trip, two in the next. The batch's answers differ: the
                // second live query fails, the fourth finds the database unavailable.
                runner.batches.borrow_mut().clear();
                runner.answers.borrow_mut().extend([
                    RunResult::Data("{\"v\":0}".into()),
                    RunResult::Failed(Rc::from(vec![GraphQLError::server(
                        crate::protocol::ErrorCode::Forbidden,
                        "denied",
                    )])),
                    RunResult::Data("{\"v\":2}".into()),
                    RunResult::Unavailable,
                    RunResult::Data("{\"v\":4}".into()),
                    RunResult::Data("{\"v\":5}".into()),
                    RunResult::Data("{\"v\":3}".into()),
                ]);
                registry.borrow_mut().mark_table(None, "orders");
                sleep(Duration::from_millis(150)).await;
                assert_eq!(
                    *runner.batches.borrow(),
                    [4, 2, 1],
                    "two batches, then the unavailable one's retry"
                );
                for (i, (outbox, slot)) in outboxes.iter().enumerate() {
                    if i == 1 {
                        match outbox.take_event() {
                            Some(crate::outbox::OpEvent::Failed { slot: failed, .. }) => {
                                assert_eq!(failed, *slot)
                            }
                            other => panic!("live query 1 did not fail: {other:?}"),
                        }
                        continue;
                    }
                    let mut out = Vec::new();
                    outbox.fill(&mut out, usize::MAX);
                    let text = String::from_utf8_lossy(&out);
                    assert!(
                        text.contains(&format!("{{\"v\":{i}}}")),
                        "live query {i} got its own answer: {text}"
                    );
                }
                assert_eq!(registry.borrow().len(), 5);
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
