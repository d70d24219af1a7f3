//! pop3.log: one row per POP3 session (mailtap's own log; Zeek has none),
//! written when the connection ends.

use mailtap_core::{ConnCtx, Pop3Record, Record, Timestamp};

/// Longest `last_reply` kept (bytes); the log writer truncates further.
const MAX_REPLY: usize = 4096;

/// What the session has shown so far.
#[derive(Debug, Default)]
pub struct Session {
    ts: Option<Timestamp>,
    auth_method: Option<Vec<u8>>,
    success: bool,
    failures: u64,
    retrieved: u64,
    bytes: u64,
    deleted: u64,
    last_reply: Option<Vec<u8>>,
}

impl Session {
    /// Data was analysed at `ts`; the first call sets the row's time.
    pub fn touch(&mut self, ts: Timestamp) {
        self.ts.get_or_insert(ts);
    }

    pub fn auth_method(&mut self, m: &[u8]) {
        if self.auth_method.as_deref() != Some(m) {
            self.auth_method = Some(m.to_vec());
        }
    }

    pub fn login_success(&mut self) {
        self.success = true;
    }

    pub fn login_failure(&mut self) {
        self.failures += 1;
    }

    pub fn retrieved(&mut self) {
        self.retrieved += 1;
    }

    pub fn retrieved_bytes(&mut self, n: u64) {
        self.bytes = self.bytes.saturating_add(n);
    }

    pub fn deleted(&mut self) {
        self.deleted += 1;
    }

    /// The last status line: `+OK`/`-ERR` and the normalised message.
    pub fn last_reply(&mut self, status: &[u8], msg: &[u8]) {
        let r = self.last_reply.get_or_insert_with(Vec::new);
        r.clear();
        r.extend_from_slice(status);
        if !msg.is_empty() {
            r.push(b' ');
            r.extend_from_slice(&msg[..msg.len().min(MAX_REPLY)]);
        }
    }

    /// Writes the row, if any POP3 data was seen.
    pub fn finish(&mut self, cx: &mut ConnCtx<'_>, user: Option<Vec<u8>>, tls: bool) {
        let Some(ts) = self.ts else { return };
        let login = if self.success {
            "success"
        } else if self.failures > 0 {
            "failure"
        } else {
            "unknown"
        };
        cx.emit(Record::Pop3(Box::new(Pop3Record {
            ts,
            uid: cx.uid.to_owned(),
            id: Some(*cx.id),
            user,
            auth_method: self.auth_method.take(),
            login,
            login_failures: self.failures,
            messages_retrieved: self.retrieved,
            bytes_retrieved: self.bytes,
            messages_deleted: self.deleted,
            tls,
            last_reply: self.last_reply.take(),
        })));
    }
}
