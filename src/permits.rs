//! Waiting for a glommio semaphore without losing wake-ups.
//!
//! When units are released, glommio wakes a waiter and takes it off its list before the
//! waiter has claimed them. If the waiting future is dropped in between (its task was
//! cancelled: a client left, an operation was stopped, a refresh was abandoned), the units
//! stay free and no other waiter hears of them: it sleeps until its own timeout while a
//! database connection sits idle. These functions pass such a wake on when their future is
//! dropped before it completed. Every wait on the pool, the refresh slots and a
//! connection's turns goes through them.

use std::rc::Rc;

use glommio::GlommioError;
use glommio::sync::{Permit, Semaphore, StaticPermit};

/// Armed while a wait is pending; dropped armed, it wakes whichever waiters the free units
/// allow (none when none are free, so a wait that was never woken changes nothing).
struct PassOn<'a> {
    semaphore: &'a Semaphore,
    armed: bool,
}

impl Drop for PassOn<'_> {
    fn drop(&mut self) {
        if self.armed {
            self.semaphore.signal(0);
        }
    }
}

/// One unit of `semaphore`, held until the permit drops.
pub async fn acquire(semaphore: &Semaphore) -> Result<Permit<'_>, GlommioError<()>> {
    let mut pass_on = PassOn {
        semaphore,
        armed: true,
    };
    let permit = semaphore.acquire_permit(1).await;
    pass_on.armed = false;
    permit
}

/// One unit of `semaphore`, held until the permit drops; the permit owns its semaphore.
pub async fn acquire_static(semaphore: &Rc<Semaphore>) -> Result<StaticPermit, GlommioError<()>> {
    let mut pass_on = PassOn {
        semaphore,
        armed: true,
    };
    let permit = semaphore.acquire_static_permit(1).await;
    pass_on.armed = false;
    permit
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn a_wait_dropped_after_its_wake_passes_the_wake_on() {
        glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .io_memory(128 * 1024)
            .spawn(|| async {
                let semaphore = Rc::new(Semaphore::new(1));
                let held = acquire_static(&semaphore).await.unwrap();
                // Two waiters in line; the first is cancelled right after it is woken.
                let first = glommio::spawn_local({
                    let s = Rc::clone(&semaphore);
                    async move { acquire_static(&s).await.map(drop) }
                });
                let second = glommio::spawn_local({
                    let s = Rc::clone(&semaphore);
                    async move { acquire_static(&s).await.map(drop) }
                });
                future::yield_now().await;
                drop(held);
                drop(first);
                // Without the pass-on the second would wait forever.
                let got = future::or(async { Some(second.await) }, async {
                    glommio::timer::sleep(std::time::Duration::from_secs(5)).await;
                    None
                })
                .await;
                assert!(matches!(got, Some(Ok(()))), "{got:?}");
            })
            .unwrap()
            .join()
            .unwrap();
    }
}
