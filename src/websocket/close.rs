//! The close handshake (RFC 6455 7.1.2 to 7.1.4): who closed first, and what is left to do.

use super::close_code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseState {
    /// Messages flow both ways.
    Open,
    /// We sent a close frame and wait for the peer's; anything else it sends is dropped.
    Sent,
    /// Both close frames are on their way: flush and close the TCP connection.
    Done,
}

/// Tracks one connection's close handshake. The caller sends the frames it is handed.
#[derive(Debug)]
pub struct CloseHandshake {
    state: CloseState,
}

impl Default for CloseHandshake {
    fn default() -> Self {
        CloseHandshake {
            state: CloseState::Open,
        }
    }
}

impl CloseHandshake {
    pub fn state(&self) -> CloseState {
        self.state
    }

    pub fn is_open(&self) -> bool {
        self.state == CloseState::Open
    }

    /// We want to close with `code`. Returns the code to send, or `None` when a close frame
    /// has already gone out (only the first close counts).
    pub fn initiate(&mut self, code: u16) -> Option<u16> {
        match self.state {
            CloseState::Open => {
                self.state = CloseState::Sent;
                Some(code)
            }
            CloseState::Sent | CloseState::Done => None,
        }
    }

    /// The peer sent a close frame. Returns the code to echo when we have not closed yet
    /// (its own code, or 1000 when it sent none).
    pub fn on_peer_close(&mut self, code: Option<u16>) -> Option<u16> {
        let reply = match self.state {
            CloseState::Open => Some(code.unwrap_or(close_code::NORMAL)),
            CloseState::Sent | CloseState::Done => None,
        };
        self.state = CloseState::Done;
        reply
    }

    /// The peer did not answer our close frame in time, or the socket failed.
    pub fn abandon(&mut self) {
        self.state = CloseState::Done;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn we_close_first_then_the_peer_answers() {
        let mut c = CloseHandshake::default();
        assert_eq!(c.initiate(4408), Some(4408));
        assert_eq!(c.state(), CloseState::Sent);
        assert_eq!(c.initiate(1001), None, "only one close frame is sent");
        assert_eq!(c.on_peer_close(Some(4408)), None, "no echo of the echo");
        assert_eq!(c.state(), CloseState::Done);
    }

    #[test]
    fn the_peer_closes_first_and_we_echo_its_code() {
        let mut c = CloseHandshake::default();
        assert_eq!(c.on_peer_close(Some(4000)), Some(4000));
        assert_eq!(c.state(), CloseState::Done);
        assert_eq!(c.initiate(1001), None);
        let mut c = CloseHandshake::default();
        assert_eq!(c.on_peer_close(None), Some(1000));
    }

    #[test]
    fn an_unanswered_close_is_abandoned() {
        let mut c = CloseHandshake::default();
        c.initiate(1001);
        c.abandon();
        assert_eq!(c.state(), CloseState::Done);
    }
}
