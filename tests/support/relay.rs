//! A TCP relay between a client under test and the server, counting round trips.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// A TCP relay to the server that counts turns: times the client starts sending again after
/// the server has answered. A call that costs one round trip adds exactly one turn.
pub fn turn_counting_relay(server: &str) -> (String, Arc<Mutex<Turns>>) {
    let target: SocketAddr = server.parse().unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let turns = Arc::new(Mutex::new(Turns::default()));
    let shared = turns.clone();
    std::thread::spawn(move || {
        let (client, _) = listener.accept().unwrap();
        let server = TcpStream::connect(target).unwrap();
        let relay = |mut from: TcpStream,
                     mut to: TcpStream,
                     turns: Arc<Mutex<Turns>>,
                     client_side: bool| {
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    let n = match from.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    {
                        let mut t = turns.lock().unwrap();
                        if client_side && !t.client_speaking {
                            t.count += 1;
                        }
                        t.client_speaking = client_side;
                    }
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to.shutdown(std::net::Shutdown::Write);
            });
        };
        relay(
            client.try_clone().unwrap(),
            server.try_clone().unwrap(),
            shared.clone(),
            true,
        );
        relay(server, client, shared, false);
    });
    (address, turns)
}

#[derive(Default)]
pub struct Turns {
    pub count: usize,
    client_speaking: bool,
}
