//! Zeek-named protocol events, for the `--events` stream.
//!
//! Names and argument names are Zeek's (`smtp_request(c, is_orig, command,
//! arg)` and so on); the connection argument `c` is represented by the
//! record's `uid` and `id`. IMAP has Zeek's two events (`imap_capabilities`,
//! `imap_starttls`) and mailtap's own `imap_request`, `imap_response` and
//! `imap_data`, which Zeek does not have (its IMAP analyzer raises no
//! per-command events).

use crate::{Bytes, ConnId, Timestamp};

/// One event with the connection it belongs to.
#[derive(Clone, Debug, PartialEq)]
pub struct EventRecord {
    pub ts: Timestamp,
    pub uid: String,
    pub id: ConnId,
    pub event: Event,
}

/// The events mailtap raises, with Zeek's arguments.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    SmtpRequest {
        is_orig: bool,
        command: Bytes,
        arg: Bytes,
    },
    SmtpReply {
        is_orig: bool,
        code: u32,
        cmd: Bytes,
        msg: Bytes,
        cont_resp: bool,
    },
    SmtpData {
        is_orig: bool,
        data: Bytes,
    },
    SmtpUnexpected {
        is_orig: bool,
        msg: Bytes,
        detail: Bytes,
    },
    SmtpStarttls,
    Pop3Request {
        is_orig: bool,
        command: Bytes,
        arg: Bytes,
    },
    Pop3Reply {
        is_orig: bool,
        cmd: Bytes,
        msg: Bytes,
    },
    Pop3Data {
        is_orig: bool,
        data: Bytes,
    },
    Pop3Unexpected {
        is_orig: bool,
        msg: Bytes,
        detail: Bytes,
    },
    Pop3Starttls,
    /// `password` is empty unless `pop3.log_passwords` is on.
    Pop3LoginSuccess {
        is_orig: bool,
        user: Bytes,
        password: Bytes,
    },
    Pop3LoginFailure {
        is_orig: bool,
        user: Bytes,
        password: Bytes,
    },
    /// Zeek's `imap_capabilities(c, capabilities: string_vec)`: a
    /// `* CAPABILITY` response (not response codes), tokens as sent.
    ImapCapabilities {
        capabilities: Vec<Bytes>,
    },
    /// Zeek's `imap_starttls(c)`: the server accepted STARTTLS.
    ImapStarttls,
    /// mailtap's own `imap_request(c, tag, command, arg)`: a client command
    /// (`UID FETCH` for the UID forms); passwords and SASL responses are
    /// never in `arg` (LOGIN shows the user and `<redacted>`).
    ImapRequest {
        tag: Bytes,
        command: Bytes,
        arg: Bytes,
    },
    /// mailtap's own `imap_response(c, tag, status, text)`: a tagged or
    /// untagged (`tag` `*`) status response.
    ImapResponse {
        tag: Bytes,
        status: Bytes,
        text: Bytes,
    },
    /// mailtap's own `imap_data(c, is_orig, section, size)`: a message
    /// literal ended (a FETCH body from the server, an APPEND payload from
    /// the client).
    ImapData {
        is_orig: bool,
        section: Bytes,
        size: u64,
    },
}

/// One argument value of an event, for the sinks to format.
#[derive(Clone, Copy, Debug)]
pub enum ArgValue<'a> {
    Bool(bool),
    Count(u64),
    Str(&'a [u8]),
    /// A Zeek `string_vec`.
    StrVec(&'a [Bytes]),
}

impl Event {
    /// Zeek's event name.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SmtpRequest { .. } => "smtp_request",
            Event::SmtpReply { .. } => "smtp_reply",
            Event::SmtpData { .. } => "smtp_data",
            Event::SmtpUnexpected { .. } => "smtp_unexpected",
            Event::SmtpStarttls => "smtp_starttls",
            Event::Pop3Request { .. } => "pop3_request",
            Event::Pop3Reply { .. } => "pop3_reply",
            Event::Pop3Data { .. } => "pop3_data",
            Event::Pop3Unexpected { .. } => "pop3_unexpected",
            Event::Pop3Starttls => "pop3_starttls",
            Event::Pop3LoginSuccess { .. } => "pop3_login_success",
            Event::Pop3LoginFailure { .. } => "pop3_login_failure",
            Event::ImapCapabilities { .. } => "imap_capabilities",
            Event::ImapStarttls => "imap_starttls",
            Event::ImapRequest { .. } => "imap_request",
            Event::ImapResponse { .. } => "imap_response",
            Event::ImapData { .. } => "imap_data",
        }
    }

    /// Heap bytes of the arguments (their capacities, plus allocator
    /// slack for each one that allocated), for
    /// [`crate::Record::approx_bytes`].
    pub fn payload_bytes(&self) -> usize {
        fn b(v: &[&crate::Bytes]) -> usize {
            v.iter()
                .map(|x| match x.capacity() {
                    0 => 0,
                    c => c + 16,
                })
                .sum()
        }
        match self {
            Event::SmtpRequest { command, arg, .. } | Event::Pop3Request { command, arg, .. } => {
                b(&[command, arg])
            }
            Event::SmtpReply { cmd, msg, .. } => b(&[cmd, msg]),
            Event::Pop3Reply { cmd, msg, .. } => b(&[cmd, msg]),
            Event::SmtpData { data, .. } | Event::Pop3Data { data, .. } => b(&[data]),
            Event::SmtpUnexpected { msg, detail, .. }
            | Event::Pop3Unexpected { msg, detail, .. } => b(&[msg, detail]),
            Event::SmtpStarttls | Event::Pop3Starttls | Event::ImapStarttls => 0,
            Event::Pop3LoginSuccess { user, password, .. }
            | Event::Pop3LoginFailure { user, password, .. } => b(&[user, password]),
            Event::ImapCapabilities { capabilities } => {
                capabilities.capacity() * std::mem::size_of::<Bytes>()
                    + capabilities.iter().map(|c| b(&[c])).sum::<usize>()
                    + 16
            }
            Event::ImapRequest {
                tag, command, arg, ..
            } => b(&[tag, command, arg]),
            Event::ImapResponse { tag, status, text } => b(&[tag, status, text]),
            Event::ImapData { section, .. } => b(&[section]),
        }
    }

    /// The arguments after `c`, named as in Zeek, in Zeek's order.
    pub fn args(&self, out: &mut dyn FnMut(&'static str, ArgValue<'_>)) {
        match self {
            Event::SmtpRequest {
                is_orig,
                command,
                arg,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("command", ArgValue::Str(command));
                out("arg", ArgValue::Str(arg));
            }
            Event::SmtpReply {
                is_orig,
                code,
                cmd,
                msg,
                cont_resp,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("code", ArgValue::Count(u64::from(*code)));
                out("cmd", ArgValue::Str(cmd));
                out("msg", ArgValue::Str(msg));
                out("cont_resp", ArgValue::Bool(*cont_resp));
            }
            Event::SmtpData { is_orig, data } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("data", ArgValue::Str(data));
            }
            Event::SmtpUnexpected {
                is_orig,
                msg,
                detail,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("msg", ArgValue::Str(msg));
                out("detail", ArgValue::Str(detail));
            }
            Event::SmtpStarttls | Event::Pop3Starttls | Event::ImapStarttls => {}
            Event::Pop3Request {
                is_orig,
                command,
                arg,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("command", ArgValue::Str(command));
                out("arg", ArgValue::Str(arg));
            }
            Event::Pop3Reply { is_orig, cmd, msg } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("cmd", ArgValue::Str(cmd));
                out("msg", ArgValue::Str(msg));
            }
            Event::Pop3Data { is_orig, data } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("data", ArgValue::Str(data));
            }
            Event::Pop3Unexpected {
                is_orig,
                msg,
                detail,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("msg", ArgValue::Str(msg));
                out("detail", ArgValue::Str(detail));
            }
            Event::Pop3LoginSuccess {
                is_orig,
                user,
                password,
            }
            | Event::Pop3LoginFailure {
                is_orig,
                user,
                password,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("user", ArgValue::Str(user));
                out("password", ArgValue::Str(password));
            }
            Event::ImapCapabilities { capabilities } => {
                out("capabilities", ArgValue::StrVec(capabilities));
            }
            Event::ImapRequest { tag, command, arg } => {
                out("tag", ArgValue::Str(tag));
                out("command", ArgValue::Str(command));
                out("arg", ArgValue::Str(arg));
            }
            Event::ImapResponse { tag, status, text } => {
                out("tag", ArgValue::Str(tag));
                out("status", ArgValue::Str(status));
                out("text", ArgValue::Str(text));
            }
            Event::ImapData {
                is_orig,
                section,
                size,
            } => {
                out("is_orig", ArgValue::Bool(*is_orig));
                out("section", ArgValue::Str(section));
                out("size", ArgValue::Count(*size));
            }
        }
    }
}
