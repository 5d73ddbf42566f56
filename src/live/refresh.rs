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

/// Runs one refresh's statement as its role and claims. Boxed: one allocation per refresh,
/// shared by all of the live query's subscribers.
pub trait Runner {
    fn run<'a>(&'a self, job: &'a Job) -> Pin<Box<dyn Future<Output = RunResult> + 'a>>;

    /// How long handing one result to every subscriber's outbox took.
    fn fanned_out(&self, took: std::time::Duration);
}

/// How the loop paces itself.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// Window in which changes are gathered into one refresh per live query.
    pub tick: Duration,
    /// Refreshes running at once on the shard (about its pool size).
    pub concurrency: usize,
    /// Pause before a refresh that found the database unreachable is tried again.
    pub retry_after: Duration,
}

/// Refreshes dirty live queries for as long as the shard runs.
pub async fn run(registry: Rc<RefCell<Registry>>, runner: Rc<dyn Runner>, pacing: Pacing) {
    // One permit per refresh in flight; a finished refresh returns its permit.
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
            let Ok(permit) = slots.acquire_static_permit(1).await else {
                return;
            };
            let Some(job) = registry.borrow_mut().take_dirty(1).pop() else {
                break;
            };
            let (registry, runner) = (Rc::clone(&registry), Rc::clone(&runner));
            glommio::spawn_local(async move {
                let result = runner.run(&job).await;
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
                    RunResult::Unavailable => {
                        drop(permit);
                        sleep(pacing.retry_after).await;
                        registry.borrow_mut().retry(job.id);
                        return;
                    }
                }
                drop(permit);
            })
            .detach();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Outbox;
    use crate::live::{LiveKey, Plan, TableRef};
    use std::cell::Cell;
    use std::collections::VecDeque;

    /// Answers refreshes from a script and counts them.
    struct Scripted {
        answers: RefCell<VecDeque<RunResult>>,
        calls: Cell<usize>,
    }

    impl Runner for Scripted {
        fn run<'a>(&'a self, _job: &'a Job) -> Pin<Box<dyn Future<Output = RunResult> + 'a>> {
            self.calls.set(self.calls.get() + 1);
            let answer = self
                .answers
                .borrow_mut()
                .pop_front()
                .unwrap_or(RunResult::Data("{}".into()));
            Box::pin(async move { answer })
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
                });
                let pacing = Pacing {
                    tick: Duration::from_millis(20),
                    concurrency: 2,
                    retry_after: Duration::from_millis(30),
                };
                let dyn_runner: Rc<dyn Runner> = runner.clone();
                glommio::spawn_local(run(Rc::clone(&registry), dyn_runner, pacing)).detach();

                let outbox = Rc::new(Outbox::default());
                let slot = outbox.open_slot(b"P");
                let key = LiveKey {
                    operation: "q".into(),
                    variables: "{}".into(),
                    role: None,
                    claims: "{}".into(),
                };
                let plan = Plan {
                    sql: "select".into(),
                    params: vec![],
                    tables: vec![TableRef {
                        schema: "public".into(),
                        table: "orders".into(),
                    }],
                    skip: Default::default(),
                };
                registry.borrow_mut().subscribe(key, || plan, &outbox, slot);
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
                    Some(crate::connection::OpEvent::Failed {
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
}
