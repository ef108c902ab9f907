//! The pure core: one query packet in, what to do with it out ([`handle`]), and the
//! responses the server builds itself. No I/O here.

use hickory_proto::op::{DEFAULT_MAX_PAYLOAD_LEN, Edns, Header, Message, MessageType, Metadata};
use hickory_proto::op::{OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use super::records::DnsRecords;

/// Size of a DNS header.
pub(crate) const HEADER_LEN: usize = 12;

/// The largest UDP answer sent, whatever a client's EDNS buffer size says.
const MAX_UDP_ANSWER: usize = 4096;

/// The largest DNS message (TCP's two-byte length prefix).
const MAX_TCP_ANSWER: usize = u16::MAX as usize;

/// The transport a query came over; it bounds the size of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

/// What the server does with a packet.
#[derive(Debug)]
pub(crate) enum Handling {
    /// Send this answer back (a local name, or an error the server gives itself).
    Reply {
        /// The response, already sized for the transport.
        bytes: Vec<u8>,
        /// What it is, for the debug log.
        outcome: Outcome,
    },
    /// Not a local name: send to the upstream resolvers.
    Forward(ForwardQuery),
    /// Not answered at all: a response (never answer one, so two servers cannot loop) or
    /// too short to hold a header (no id to answer to).
    Drop(&'static str),
}

/// Why the server answered a packet itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A local name: the question and the number of A records answered.
    Local(Query, usize),
    /// FORMERR: the packet is not a well-formed query with one question.
    FormErr,
    /// NOTIMP: an opcode other than QUERY.
    NotImp,
}

/// A query to forward: the client's packet and what is needed to check and size the
/// upstream's answer.
#[derive(Debug, Clone)]
pub(crate) struct ForwardQuery {
    /// The client's query, unchanged.
    pub(crate) packet: Vec<u8>,
    /// The client's header.
    pub(crate) metadata: Metadata,
    /// The one question.
    pub(crate) query: Query,
    /// The largest answer the client takes over UDP (512, or its EDNS buffer size).
    pub(crate) udp_limit: usize,
    /// Whether the client sent EDNS (an answer the server builds then carries it too).
    pub(crate) edns: bool,
}

impl ForwardQuery {
    /// SERVFAIL for this query, with its question (stub resolvers such as glibc's ignore
    /// an answer whose question does not match theirs).
    pub(crate) fn servfail(&self) -> Vec<u8> {
        let mut msg = response_to(&self.metadata, &self.query, self.edns);
        msg.metadata.response_code = ResponseCode::ServFail;
        encode(&msg, &self.metadata)
    }
}

/// Decides what to do with one packet a client sent.
pub(crate) fn handle(packet: &[u8], records: &DnsRecords, transport: Transport) -> Handling {
    let Ok(header) = Header::read(&mut BinDecoder::new(packet)) else {
        return Handling::Drop("shorter than a DNS header");
    };
    let request = header.metadata;
    if request.message_type == MessageType::Response {
        return Handling::Drop("a response, not a query");
    }
    let Ok(msg) = Message::from_vec(packet) else {
        return formerr(&request);
    };
    if msg.metadata.op_code != OpCode::Query {
        return notimp(&msg);
    }
    let [query] = msg.queries.as_slice() else {
        return formerr(&request);
    };
    let edns = msg.edns.as_ref();
    let udp_limit = edns.map_or(512, |e| {
        usize::from(e.max_payload()).clamp(512, MAX_UDP_ANSWER)
    });
    let limit = match transport {
        Transport::Udp => udp_limit,
        Transport::Tcp => MAX_TCP_ANSWER,
    };
    let found = if query.query_class() == DNSClass::IN {
        let labels: Vec<&[u8]> = query.name().iter().collect();
        records.lookup_labels(&labels)
    } else {
        None
    };
    let Some(found) = found else {
        return Handling::Forward(ForwardQuery {
            packet: packet.to_vec(),
            metadata: request,
            query: query.clone(),
            udp_limit,
            edns: edns.is_some(),
        });
    };
    let mut response = response_to(&request, query, edns.is_some());
    response.metadata.authoritative = true;
    if matches!(query.query_type(), RecordType::A | RecordType::ANY) {
        response.answers = found
            .addrs
            .iter()
            .map(|ip| Record::from_rdata(query.name().clone(), found.ttl, RData::A(A(*ip))))
            .collect();
    }
    let (bytes, count) = fit(response, limit, &request);
    Handling::Reply {
        bytes,
        outcome: Outcome::Local(query.clone(), count),
    }
}

/// A response to `request` carrying its question, with RA set (the server recurses by
/// forwarding) and an OPT record when the request had one.
fn response_to(request: &Metadata, query: &Query, edns: bool) -> Message {
    let mut msg = Message::response(request.id, request.op_code);
    msg.metadata = Metadata::response_from_request(request);
    msg.metadata.recursion_available = true;
    msg.add_query(query.clone());
    if edns {
        let mut opt = Edns::new();
        opt.set_max_payload(DEFAULT_MAX_PAYLOAD_LEN);
        msg.set_edns(opt);
    }
    msg
}

/// Encodes `msg`, keeping as many answers as fit in `limit` bytes and setting TC when some
/// had to go (clients then ask again over TCP; those that do not still get a usable
/// partial answer). Returns the bytes and the number of answers kept.
fn fit(mut msg: Message, limit: usize, request: &Metadata) -> (Vec<u8>, usize) {
    let all = msg.answers.len();
    let bytes = encode(&msg, request);
    if bytes.len() <= limit {
        return (bytes, all);
    }
    let answers = std::mem::take(&mut msg.answers);
    msg.metadata.truncation = true;
    // The most answers that fit: fits(lo) holds, fits(hi) does not.
    let (mut lo, mut hi) = (0, all);
    let mut best = {
        msg.answers = Vec::new();
        encode(&msg, request)
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        msg.answers = answers[..mid].to_vec();
        let bytes = encode(&msg, request);
        if bytes.len() <= limit {
            lo = mid;
            best = bytes;
        } else {
            hi = mid;
        }
    }
    (best, lo)
}

/// Encodes a response; if that fails (it cannot for what the server builds), a bare
/// SERVFAIL header for the request instead, so the client still hears back.
fn encode(msg: &Message, request: &Metadata) -> Vec<u8> {
    msg.to_vec()
        .unwrap_or_else(|_| bare_header(request, ResponseCode::ServFail))
}

/// A response of only a header (no question: the request's could not be read).
fn bare_header(request: &Metadata, rcode: ResponseCode) -> Vec<u8> {
    let [id_hi, id_lo] = request.id.to_be_bytes();
    let flags1 = 0x80 | (u8::from(request.op_code) << 3) | u8::from(request.recursion_desired);
    let flags2 = 0x80 | rcode.low();
    let mut out = vec![0; HEADER_LEN];
    out[..4].copy_from_slice(&[id_hi, id_lo, flags1, flags2]);
    out
}

fn formerr(request: &Metadata) -> Handling {
    Handling::Reply {
        bytes: bare_header(request, ResponseCode::FormErr),
        outcome: Outcome::FormErr,
    }
}

fn notimp(msg: &Message) -> Handling {
    let mut response = Message::response(msg.metadata.id, msg.metadata.op_code);
    response.metadata = Metadata::response_from_request(&msg.metadata);
    response.metadata.response_code = ResponseCode::NotImp;
    if let [query] = msg.queries.as_slice() {
        response.add_query(query.clone());
    }
    Handling::Reply {
        bytes: encode(&response, &msg.metadata),
        outcome: Outcome::NotImp,
    }
}
