//! Zeek-named protocol events, for the `--events` stream.
//!
//! Names and argument names are Zeek's (`smtp_request(c, is_orig, command,
//! arg)` and so on); the connection argument `c` is represented by the
//! record's `uid` and `id`.

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
}

/// One argument value of an event, for the sinks to format.
#[derive(Clone, Copy, Debug)]
pub enum ArgValue<'a> {
    Bool(bool),
    Count(u64),
    Str(&'a [u8]),
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
            Event::SmtpStarttls => {}
        }
    }
}
