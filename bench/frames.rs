//! Frame codec micro-benchmarks: decoding a masked client message and encoding a result
//! frame around a shared payload, the two operations every message pays.
//!
//! ```text
//! cargo bench --bench frames
//! ```

#[path = "measure.rs"]
mod measure;

use std::hint::black_box;

use measure::measure;
use postrust::protocol::Session;
use postrust::websocket::{Decoded, Decoder, SubProtocol, encode_text_parts};

fn masked_text(payload: &[u8]) -> Vec<u8> {
    let mask = [1, 2, 3, 4];
    let mut out = vec![0x81, 0x80 | 126];
    out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i & 3]));
    out
}

fn main() {
    let subscribe = br#"{"id":"1","type":"subscribe","payload":{"query":"subscription { orders(filter: { status: { eq: \"pending\" } }) { id total status customer { name email } } }"}}"#;
    let frame = masked_text(subscribe);
    let mut work = frame.clone();
    let mut decoder = Decoder::new(1 << 20);
    measure("decode masked subscribe (160 B)", 1_000_000, || {
        work.copy_from_slice(&frame);
        match decoder.decode(black_box(&mut work)) {
            Ok(Decoded::Frame { consumed, .. }) => assert_eq!(consumed, frame.len()),
            other => panic!("{other:?}"),
        }
    });

    let session = Session::new(SubProtocol::TransportWs);
    let prefix = session.result_prefix("1");
    for rows in [10usize, 1000] {
        let row = r#"{"id":1,"total":"12.50","status":"pending","customer":{"name":"Ada","email":"ada@example.com"}}"#;
        let result = format!(
            "{{\"data\":{{\"orders\":[{}]}}}}",
            vec![row; rows].join(",")
        );
        let mut out = Vec::with_capacity(result.len() + 64);
        let name = format!("encode next frame ({} B result)", result.len());
        measure(&name, if rows > 100 { 50_000 } else { 1_000_000 }, || {
            out.clear();
            encode_text_parts(
                &[prefix.as_bytes(), black_box(result.as_bytes()), b"}"],
                &mut out,
            );
            black_box(&out);
        });
    }
}
