//! PostgreSQL stopped and started again under a running pool and listener. Uses a cluster
//! of its own: stopping the shared one would break the other tests.

mod support;

use std::time::Duration;

use postrust::pg::{
    ConnectConfig, ConnectOptions, ErrorKind, Listener, ListenerEvent, Pool, PoolOptions,
};
use support::pg::Cluster;
use support::{run, within};

const LIMIT: Duration = Duration::from_secs(60);

#[test]
fn pool_and_listener_reconnect_once_the_server_is_back() {
    let cluster = Cluster::start_private();
    let config = ConnectConfig::from_url(&cluster.url).unwrap();
    let options = PoolOptions {
        size: 2,
        timeout: Duration::from_secs(30),
        backoff_min: Duration::from_millis(50),
        backoff_max: Duration::from_millis(500),
        statement_timeout: None,
    };
    run(async {
        let pool = Pool::new(config.clone(), ConnectOptions::default(), options.clone());
        let mut listener = Listener::start(
            config.clone(),
            ConnectOptions::default(),
            &options,
            vec!["ping".into()],
        );
        assert_eq!(
            within(LIMIT, "listening", listener.next()).await,
            Some(ListenerEvent::Listening { after_gap: false })
        );
        let before = pool.get().await.unwrap();
        let pid = before.process_id();
        before.query("SELECT 1", &[]).await.unwrap();
        drop(before);

        // The script blocks until the server is down; run it off the executor thread.
        let halt = std::thread::spawn({
            let dir = cluster.dir().unwrap().to_owned();
            move || Cluster::halt_dir(&dir)
        });
        while !halt.is_finished() {
            glommio::timer::sleep(Duration::from_millis(20)).await;
        }
        halt.join().unwrap();

        match within(LIMIT, "lost", listener.next()).await {
            Some(ListenerEvent::Lost(e)) => assert!(e.is_closed(), "{e}"),
            other => panic!("expected Lost, got {other:?}"),
        }
        // While the server is down a short wait fails with the reason...
        let short = Pool::new(
            config.clone(),
            ConnectOptions::default(),
            PoolOptions {
                timeout: Duration::from_millis(300),
                ..options.clone()
            },
        );
        let err = within(LIMIT, "down", short.get()).await.err().unwrap();
        assert_eq!(err.kind(), ErrorKind::PoolTimeout, "{err}");
        assert!(err.to_string().contains("last connection error"), "{err}");

        // ...and a caller that waits through the restart gets a connection once it is back.
        let resume = std::thread::spawn({
            let dir = cluster.dir().unwrap().to_owned();
            move || {
                std::thread::sleep(Duration::from_millis(700));
                Cluster::resume_dir(&dir)
            }
        });
        let after = within(LIMIT, "reconnect", pool.get()).await.unwrap();
        let rows = after.query("SELECT pg_backend_pid()", &[]).await.unwrap();
        assert_ne!(rows.value(0, 0), Some(pid.to_string().as_str()));
        resume.join().unwrap();

        assert_eq!(
            within(LIMIT, "relisten", listener.next()).await,
            Some(ListenerEvent::Listening { after_gap: true })
        );
        after.query("NOTIFY ping, 'back'", &[]).await.unwrap();
        match within(LIMIT, "notification", listener.next()).await {
            Some(ListenerEvent::Notification(n)) => assert_eq!(n.payload, "back"),
            other => panic!("{other:?}"),
        }
    });
}
