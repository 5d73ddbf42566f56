//! Notifications: NOTIFY from another session, a burst of 10,000 in one transaction, and
//! the LISTEN connection surviving a terminated backend with the gap reported.

mod support;

use postrust::pg::{ConnectOptions, Listener, ListenerEvent};
use support::pg::cluster;
use support::{LIMIT, config, connect, fast_pool_options, run, within};

#[test]
fn notify_from_another_session_arrives() {
    let cluster = cluster();
    let url = cluster.fresh_database("notify");
    run(async {
        let c = connect(&url).await;
        let mut notifications = c.notifications();
        c.batch_execute("LISTEN \"Mixed Case\"").await.unwrap();
        cluster.psql(&url, "NOTIFY \"Mixed Case\", 'hello ünïcode'");
        let n = within(LIMIT, "notification", notifications.next())
            .await
            .unwrap();
        assert_eq!(n.channel, "Mixed Case");
        assert_eq!(n.payload, "hello ünïcode");
        assert_ne!(n.process_id, c.process_id(), "sent by the psql session");
    });
}

#[test]
fn a_burst_of_ten_thousand_notifications_arrives_complete_and_in_order() {
    let url = cluster().fresh_database("burst");
    run(async {
        let options = ConnectOptions {
            notify_queue: 256,
            ..ConnectOptions::default()
        };
        let mut listener = Listener::start(
            config(&url),
            options,
            &fast_pool_options(1),
            vec!["burst".into()],
        );
        let first = within(LIMIT, "listening", listener.next()).await;
        assert_eq!(first, Some(ListenerEvent::Listening { after_gap: false }));
        let sender = connect(&url).await;
        sender
            .query(
                "SELECT count(pg_notify('burst', i::text)) FROM generate_series(1, 10000) i",
                &[],
            )
            .await
            .unwrap();
        for expected in 1..=10_000 {
            match within(LIMIT, "burst", listener.next()).await {
                Some(ListenerEvent::Notification(n)) => {
                    assert_eq!(n.payload, expected.to_string());
                    assert_eq!(n.process_id, sender.process_id());
                }
                other => panic!("expected notification {expected}, got {other:?}"),
            }
        }
    });
}

#[test]
fn the_listener_recovers_from_a_terminated_backend_and_reports_the_gap() {
    let cluster = cluster();
    let url = cluster.fresh_database("listen_kill");
    run(async {
        let listen_url = format!("{url}?application_name=gap_listener");
        let mut listener = Listener::start(
            config(&listen_url),
            ConnectOptions::default(),
            &fast_pool_options(1),
            vec!["changes".into(), "other".into()],
        );
        let event = within(LIMIT, "listening", listener.next()).await;
        assert_eq!(event, Some(ListenerEvent::Listening { after_gap: false }));
        cluster.psql(&url, "NOTIFY changes, 'before'");
        match within(LIMIT, "first", listener.next()).await {
            Some(ListenerEvent::Notification(n)) => assert_eq!(n.payload, "before"),
            other => panic!("{other:?}"),
        }

        cluster.psql(
            &url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'gap_listener'",
        );
        match within(LIMIT, "lost", listener.next()).await {
            Some(ListenerEvent::Lost(e)) => {
                assert!(e.is_closed(), "{e}");
                assert_eq!(e.code(), Some("57P01"), "{e}");
            }
            other => panic!("expected Lost, got {other:?}"),
        }
        let event = within(LIMIT, "relisten", listener.next()).await;
        assert_eq!(event, Some(ListenerEvent::Listening { after_gap: true }));
        cluster.psql(&url, "NOTIFY other, 'after'");
        match within(LIMIT, "after", listener.next()).await {
            Some(ListenerEvent::Notification(n)) => {
                assert_eq!((n.channel.as_str(), n.payload.as_str()), ("other", "after"));
            }
            other => panic!("{other:?}"),
        }
    });
}

/// A server that answers startup, then answers the first query (the listener's LISTEN) with
/// `burst` notifications ahead of its replies, then closes the connection.
fn chatty_server(burst: usize) -> std::net::SocketAddr {
    use support::fake_pg::{STARTUP_DONE, message, read_message, read_startup, send};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        read_startup(&mut s);
        send(&mut s, STARTUP_DONE);
        read_message(&mut s);
        let mut out = Vec::new();
        let mut notification = 7u32.to_be_bytes().to_vec();
        notification.extend_from_slice(b"changes\0");
        notification.extend_from_slice("x".repeat(200).as_bytes());
        notification.push(0);
        for _ in 0..burst {
            message(&mut out, b'A', &notification);
        }
        for _ in 0..2 {
            message(&mut out, b'C', b"LISTEN\0");
        }
        message(&mut out, b'Z', b"I");
        send(&mut s, &out);
        // Then the server goes away.
    });
    addr
}

/// Notifications that fill the stream before LISTEN's reply is read must not stop the
/// reply (and then the connection's end) from being read: the listener reports that it
/// listens, then that the connection was lost.
#[test]
fn notifications_ahead_of_the_listen_reply_cannot_stall_the_listener() {
    let addr = chatty_server(200);
    run(async {
        let mut listener = Listener::start(
            config(&format!("postgres://u@{addr}/d?sslmode=disable")),
            ConnectOptions {
                notify_queue: 4,
                ..ConnectOptions::default()
            },
            &fast_pool_options(1),
            vec!["changes".into(), "schema".into()],
        );
        let first = within(LIMIT, "the listener's first event", listener.next()).await;
        assert_eq!(first, Some(ListenerEvent::Listening { after_gap: false }));
        let mut notifications = 0;
        loop {
            match within(LIMIT, "the rest", listener.next()).await {
                Some(ListenerEvent::Notification(_)) => notifications += 1,
                Some(ListenerEvent::Lost(_)) => break,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(notifications, 200, "none dropped");
    });
}

/// A server that never answers LISTEN holds the listener no longer than the connect
/// timeout: it connects again.
#[test]
fn a_listen_that_gets_no_answer_is_tried_again() {
    use support::fake_pg::{STARTUP_DONE, read_message, read_startup, send};
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let (again_tx, again_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let (mut silent, _) = server.accept().unwrap();
        read_startup(&mut silent);
        send(&mut silent, STARTUP_DONE);
        read_message(&mut silent);
        // No answer; the socket stays open. The next connection is the listener's retry.
        let (_again, _) = server.accept().unwrap();
        let _ = again_tx.send(());
        let _keep = silent;
        std::thread::sleep(LIMIT);
    });
    run(async {
        let _listener = Listener::start(
            config(&format!("postgres://u@{addr}/d?sslmode=disable")),
            ConnectOptions {
                connect_timeout: std::time::Duration::from_millis(300),
                ..ConnectOptions::default()
            },
            &fast_pool_options(1),
            vec!["changes".into()],
        );
        within(LIMIT, "the listener's second connection", async {
            while again_rx.try_recv().is_err() {
                glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
            }
        })
        .await;
    });
}
