//! Tests over real loopback sockets: the server on 127.0.0.1:0, fake upstreams on
//! 127.0.0.1:0 written here, hickory-proto messages from a test client. Nothing leaves the
//! loopback interface.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;

use super::handle::{Handling, Transport, handle};
use super::upstream::{read_frame, write_frame};
use super::*;

const LOOPBACK_ANY_PORT: &str = "127.0.0.1:0";
const VIP: Ipv4Addr = Ipv4Addr::new(10, 0, 9, 2);
const T1: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const T2: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const T3: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 4);
const UPSTREAM_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// Upstream timeout in the tests.
const TIMEOUT: Duration = Duration::from_millis(300);
/// How long a test client waits for an answer it expects.
const CLIENT_WAIT: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------------------------------
// Helpers: messages, a client, fake upstreams.

fn query_bytes(id: u16, name: &str, qtype: RecordType) -> Vec<u8> {
    let mut msg = Message::new(id, MessageType::Query, OpCode::Query);
    msg.metadata.recursion_desired = true;
    msg.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    msg.to_vec().unwrap()
}

fn addrs(msg: &Message) -> Vec<Ipv4Addr> {
    msg.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

fn sorted(mut v: Vec<Ipv4Addr>) -> Vec<Ipv4Addr> {
    v.sort();
    v
}

/// Sends one datagram from a fresh socket and waits up to `wait` for one back.
async fn udp_raw(server: SocketAddr, packet: &[u8], wait: Duration) -> Option<Vec<u8>> {
    let socket = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
    socket.connect(server).await.unwrap();
    socket.send(packet).await.unwrap();
    let mut buf = vec![0; 65535];
    let n = tokio::time::timeout(wait, socket.recv(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf[..n].to_vec())
}

async fn ask(server: SocketAddr, id: u16, name: &str, qtype: RecordType) -> Message {
    let bytes = udp_raw(server, &query_bytes(id, name, qtype), CLIENT_WAIT)
        .await
        .unwrap_or_else(|| panic!("no UDP answer for {name}"));
    let msg = Message::from_vec(&bytes).unwrap();
    assert_eq!(msg.metadata.id, id, "the client's id comes back");
    assert_eq!(msg.metadata.message_type, MessageType::Response);
    msg
}

async fn ask_tcp(server: SocketAddr, id: u16, name: &str, qtype: RecordType) -> Message {
    let mut stream = TcpStream::connect(server).await.unwrap();
    write_frame(&mut stream, &query_bytes(id, name, qtype))
        .await
        .unwrap();
    let bytes = tokio::time::timeout(CLIENT_WAIT, read_frame(&mut stream))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let msg = Message::from_vec(&bytes).unwrap();
    assert_eq!(msg.metadata.id, id);
    msg
}

fn config() -> DnsConfig {
    DnsConfig {
        upstream_timeout: TIMEOUT,
        ..DnsConfig::default()
    }
}

async fn start(records: &DnsRecords, upstreams: Vec<SocketAddr>) -> DnsServer {
    DnsServer::start_with(
        LOOPBACK_ANY_PORT.parse().unwrap(),
        records.clone(),
        upstreams,
        config(),
    )
    .await
    .unwrap()
}

/// How a fake upstream answers.
#[derive(Debug, Clone, Copy)]
enum Behaviour {
    /// One A record, [`UPSTREAM_IP`].
    Answer,
    /// NXDOMAIN.
    NxDomain,
    /// SERVFAIL.
    ServFail,
    /// Over UDP an empty answer with TC set; over TCP this many A records.
    Truncating(usize),
}

fn upstream_answer(behaviour: Behaviour, query: &Message, over_tcp: bool) -> Vec<u8> {
    let mut msg = Message::response(query.metadata.id, OpCode::Query);
    msg.metadata.recursion_desired = query.metadata.recursion_desired;
    msg.metadata.recursion_available = true;
    msg.add_queries(query.queries.iter().cloned());
    let name = query.queries[0].name().clone();
    let a = |ip| Record::from_rdata(name.clone(), 60, RData::A(A(ip)));
    match behaviour {
        Behaviour::Answer => {
            msg.add_answer(a(UPSTREAM_IP));
        }
        Behaviour::NxDomain => msg.metadata.response_code = ResponseCode::NXDomain,
        Behaviour::ServFail => msg.metadata.response_code = ResponseCode::ServFail,
        Behaviour::Truncating(n) if over_tcp => {
            for i in 0..n {
                msg.add_answer(a(Ipv4Addr::new(192, 0, 2, (i % 250) as u8 + 1)));
            }
        }
        Behaviour::Truncating(_) => msg.metadata.truncation = true,
    }
    msg.to_vec().unwrap()
}

/// A UDP and TCP responder on loopback that counts and keeps the queries it gets.
struct FakeUpstream {
    addr: SocketAddr,
    udp: Arc<AtomicUsize>,
    tcp: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Message>>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FakeUpstream {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl FakeUpstream {
    async fn start(behaviour: Behaviour) -> FakeUpstream {
        let (udp_socket, listener) = loop {
            let udp = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
            if let Ok(tcp) = TcpListener::bind(udp.local_addr().unwrap()).await {
                break (udp, tcp);
            }
        };
        let addr = udp_socket.local_addr().unwrap();
        let (udp, tcp) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let udp_task = {
            let (count, seen) = (udp.clone(), seen.clone());
            tokio::spawn(async move {
                let mut buf = vec![0; 65535];
                loop {
                    let (n, from) = udp_socket.recv_from(&mut buf).await.unwrap();
                    let query = Message::from_vec(&buf[..n]).unwrap();
                    count.fetch_add(1, Ordering::SeqCst);
                    let answer = upstream_answer(behaviour, &query, false);
                    seen.lock().unwrap().push(query);
                    udp_socket.send_to(&answer, from).await.unwrap();
                }
            })
        };
        let tcp_task = {
            let (count, seen) = (tcp.clone(), seen.clone());
            tokio::spawn(async move {
                loop {
                    let (mut stream, _) = listener.accept().await.unwrap();
                    let (count, seen) = (count.clone(), seen.clone());
                    tokio::spawn(async move {
                        while let Ok(Some(bytes)) = read_frame(&mut stream).await {
                            let query = Message::from_vec(&bytes).unwrap();
                            count.fetch_add(1, Ordering::SeqCst);
                            let answer = upstream_answer(behaviour, &query, true);
                            seen.lock().unwrap().push(query);
                            if write_frame(&mut stream, &answer).await.is_err() {
                                break;
                            }
                        }
                    });
                }
            })
        };
        FakeUpstream {
            addr,
            udp,
            tcp,
            seen,
            tasks: vec![udp_task, tcp_task],
        }
    }

    fn udp_queries(&self) -> usize {
        self.udp.load(Ordering::SeqCst)
    }

    fn tcp_queries(&self) -> usize {
        self.tcp.load(Ordering::SeqCst)
    }
}

/// A loopback UDP port that is bound but never answers (keep the socket alive).
async fn black_hole() -> (UdpSocket, SocketAddr) {
    let socket = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
    let addr = socket.local_addr().unwrap();
    (socket, addr)
}

/// A loopback port nothing listens on (UDP: the kernel answers port unreachable).
async fn closed_port() -> SocketAddr {
    UdpSocket::bind(LOOPBACK_ANY_PORT)
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn web_records() -> DnsRecords {
    let records = DnsRecords::new();
    records
        .set_service("web", Some(VIP), vec![T1, T2, T3])
        .unwrap();
    records
}

// ---------------------------------------------------------------------------------------
// Local answers.

#[tokio::test]
async fn service_name_answers_its_vip() {
    let upstream = FakeUpstream::start(Behaviour::Answer).await;
    let server = start(&web_records(), vec![upstream.addr]).await;
    let msg = ask(server.local_addr(), 7, "web.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert!(msg.metadata.authoritative);
    assert!(msg.metadata.recursion_available);
    assert!(msg.metadata.recursion_desired, "RD is copied");
    assert_eq!(msg.queries.len(), 1, "the question is echoed");
    assert_eq!(addrs(&msg), vec![VIP]);
    assert_eq!(msg.answers[0].ttl, VIP_TTL);
    assert_eq!(msg.answers[0].dns_class, DNSClass::IN);
    assert_eq!(upstream.udp_queries(), 0, "a local name is never forwarded");
    server.shutdown().await;
}

#[tokio::test]
async fn tasks_name_answers_every_task_rotated() {
    let upstream = FakeUpstream::start(Behaviour::Answer).await;
    let server = start(&web_records(), vec![upstream.addr]).await;
    let mut firsts = Vec::new();
    for id in 0..3 {
        let msg = ask(server.local_addr(), id, "tasks.web.", RecordType::A).await;
        assert_eq!(sorted(addrs(&msg)), vec![T1, T2, T3]);
        assert!(msg.answers.iter().all(|r| r.ttl == TASKS_TTL));
        firsts.push(addrs(&msg)[0]);
    }
    assert_eq!(
        sorted(firsts),
        vec![T1, T2, T3],
        "each query starts elsewhere"
    );
    assert_eq!(upstream.udp_queries(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn names_match_ignoring_case_with_or_without_the_dot() {
    let records = web_records();
    let server = start(&records, vec![]).await;
    let msg = ask(server.local_addr(), 1, "WeB.", RecordType::A).await;
    assert_eq!(addrs(&msg), vec![VIP]);
    assert_eq!(
        msg.answers[0].name.to_ascii(),
        "WeB.",
        "the asked spelling is kept"
    );
    let msg = ask(server.local_addr(), 2, "TASKS.wEb.", RecordType::A).await;
    assert_eq!(sorted(addrs(&msg)), vec![T1, T2, T3]);

    // The lookup API: with and without the dot, any case; nothing under another suffix.
    for name in ["web", "web.", "WEB", "Web."] {
        assert_eq!(records.lookup(name).unwrap().addrs, vec![VIP], "{name}");
    }
    for name in ["tasks.web", "Tasks.WEB."] {
        assert_eq!(
            sorted(records.lookup(name).unwrap().addrs),
            vec![T1, T2, T3]
        );
    }
    for name in [
        "web.corp.example",
        "tasks.web.corp.",
        "x.web",
        "tasks",
        "",
        ".",
        "web..",
    ] {
        assert_eq!(records.lookup(name), None, "{name:?}");
    }
    // A name set in upper case is found in lower case too.
    records.set_service("DB", Some(T1), vec![]).unwrap();
    assert_eq!(records.lookup("db").unwrap().addrs, vec![T1]);
    server.shutdown().await;
}

#[tokio::test]
async fn known_names_without_a_records_are_nodata_never_forwarded() {
    let upstream = FakeUpstream::start(Behaviour::Answer).await;
    let records = web_records();
    records.set_service("idle", Some(VIP), vec![]).unwrap();
    records.set_service("empty", None, vec![]).unwrap();
    let server = start(&records, vec![upstream.addr]).await;
    let cases = [
        ("web.", RecordType::AAAA),
        ("tasks.web.", RecordType::AAAA),
        ("web.", RecordType::MX),
        ("web.", RecordType::TXT),
        ("tasks.idle.", RecordType::A),
        ("empty.", RecordType::A),
        ("tasks.empty.", RecordType::A),
    ];
    for (id, (name, qtype)) in (1..).zip(cases) {
        let msg = ask(server.local_addr(), id, name, qtype).await;
        assert_eq!(
            msg.metadata.response_code,
            ResponseCode::NoError,
            "{name} {qtype}"
        );
        assert!(msg.answers.is_empty(), "{name} {qtype}");
        assert!(msg.authorities.is_empty(), "no SOA: not cached");
        assert!(msg.metadata.authoritative);
    }
    assert_eq!(upstream.udp_queries() + upstream.tcp_queries(), 0);
    server.shutdown().await;
}

#[tokio::test]
async fn service_without_vip_answers_its_tasks() {
    let records = DnsRecords::new();
    records.set_service("rr", None, vec![T1, T2]).unwrap();
    let server = start(&records, vec![]).await;
    let msg = ask(server.local_addr(), 1, "rr.", RecordType::A).await;
    assert_eq!(sorted(addrs(&msg)), vec![T1, T2]);
    assert!(msg.answers.iter().all(|r| r.ttl == TASKS_TTL));
    server.shutdown().await;
}

#[tokio::test]
async fn many_tasks_are_truncated_over_udp_and_whole_over_tcp() {
    let tasks: Vec<Ipv4Addr> = (0..200u8).map(|i| Ipv4Addr::new(10, 3, 0, i)).collect();
    let records = DnsRecords::new();
    records.set_service("big", None, tasks.clone()).unwrap();
    let server = start(&records, vec![]).await;

    let bytes = udp_raw(
        server.local_addr(),
        &query_bytes(1, "tasks.big.", RecordType::A),
        CLIENT_WAIT,
    )
    .await
    .unwrap();
    assert!(bytes.len() <= 512, "{} bytes over UDP", bytes.len());
    let msg = Message::from_vec(&bytes).unwrap();
    assert!(msg.metadata.truncation, "TC set");
    assert!(!msg.answers.is_empty() && msg.answers.len() < 200);

    let msg = ask_tcp(server.local_addr(), 2, "tasks.big.", RecordType::A).await;
    assert!(!msg.metadata.truncation);
    assert_eq!(sorted(addrs(&msg)), tasks);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Forwarding.

#[tokio::test]
async fn unknown_name_is_forwarded_with_the_clients_id() {
    let upstream = FakeUpstream::start(Behaviour::Answer).await;
    let server = start(&web_records(), vec![upstream.addr]).await;
    let msg = ask(server.local_addr(), 0xbeef, "Example.ORG.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addrs(&msg), vec![UPSTREAM_IP]);
    assert!(
        !msg.metadata.authoritative,
        "the upstream's answer, as it is"
    );
    assert_eq!(upstream.udp_queries(), 1);
    assert_eq!(upstream.tcp_queries(), 0);
    let seen = upstream.seen.lock().unwrap()[0].clone();
    assert_eq!(
        seen.queries[0].name().to_ascii(),
        "Example.ORG.",
        "name unchanged"
    );
    assert!(seen.metadata.recursion_desired);
    // Names below a service name, and other classes, are not local either.
    let msg = ask(server.local_addr(), 2, "x.web.", RecordType::A).await;
    assert_eq!(addrs(&msg), vec![UPSTREAM_IP]);
    assert_eq!(upstream.udp_queries(), 2);
    server.shutdown().await;
}

#[tokio::test]
async fn truncated_upstream_answer_is_asked_again_over_tcp() {
    let upstream = FakeUpstream::start(Behaviour::Truncating(3)).await;
    let server = start(&DnsRecords::new(), vec![upstream.addr]).await;
    let msg = ask(server.local_addr(), 9, "big.example.", RecordType::A).await;
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 3);
    assert_eq!((upstream.udp_queries(), upstream.tcp_queries()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn full_answer_too_big_for_udp_relays_the_truncated_one() {
    // 60 records do not fit the 512 bytes of a client without EDNS.
    let upstream = FakeUpstream::start(Behaviour::Truncating(60)).await;
    let server = start(&DnsRecords::new(), vec![upstream.addr]).await;
    let msg = ask(server.local_addr(), 9, "huge.example.", RecordType::A).await;
    assert!(msg.metadata.truncation, "the client must ask over TCP");
    // ... which it then does, and gets everything.
    let msg = ask_tcp(server.local_addr(), 10, "huge.example.", RecordType::A).await;
    assert!(!msg.metadata.truncation);
    assert_eq!(msg.answers.len(), 60);
    server.shutdown().await;
}

#[tokio::test]
async fn query_over_tcp_is_answered_and_forwarded_over_tcp() {
    let upstream = FakeUpstream::start(Behaviour::Answer).await;
    let server = start(&web_records(), vec![upstream.addr]).await;
    let msg = ask_tcp(server.local_addr(), 3, "web.", RecordType::A).await;
    assert_eq!(addrs(&msg), vec![VIP]);
    let msg = ask_tcp(server.local_addr(), 4, "example.org.", RecordType::A).await;
    assert_eq!(addrs(&msg), vec![UPSTREAM_IP]);
    assert_eq!((upstream.udp_queries(), upstream.tcp_queries()), (0, 1));

    // Several queries on one connection.
    let mut stream = TcpStream::connect(server.local_addr()).await.unwrap();
    for id in 10..13 {
        write_frame(&mut stream, &query_bytes(id, "tasks.web.", RecordType::A))
            .await
            .unwrap();
        let bytes = read_frame(&mut stream).await.unwrap().unwrap();
        let msg = Message::from_vec(&bytes).unwrap();
        assert_eq!(msg.metadata.id, id);
        assert_eq!(msg.answers.len(), 3);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn dead_upstream_is_skipped_then_servfail_within_the_timeouts() {
    let upstream = FakeUpstream::start(Behaviour::Answer).await;
    let (_hole, silent) = black_hole().await;
    let refused = closed_port().await;

    // A silent upstream costs one timeout, then the next one answers.
    let server = start(&DnsRecords::new(), vec![silent, upstream.addr]).await;
    let started = Instant::now();
    let msg = ask(server.local_addr(), 1, "example.org.", RecordType::A).await;
    assert_eq!(addrs(&msg), vec![UPSTREAM_IP]);
    assert!(started.elapsed() >= TIMEOUT);
    assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());

    // None answers: SERVFAIL, with the question, after at most one timeout each.
    server.set_upstreams(vec![silent, refused]);
    let started = Instant::now();
    let msg = ask(server.local_addr(), 2, "example.org.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(msg.queries.len(), 1, "stub resolvers match the question");
    assert!(msg.answers.is_empty());
    assert!(started.elapsed() < TIMEOUT * 3, "{:?}", started.elapsed());

    // Over TCP as well (a refused TCP connection falls back to UDP, refused too).
    let msg = ask_tcp(server.local_addr(), 3, "example.org.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    server.shutdown().await;
}

#[tokio::test]
async fn servfail_upstream_moves_on_to_the_next() {
    let failing = FakeUpstream::start(Behaviour::ServFail).await;
    let good = FakeUpstream::start(Behaviour::Answer).await;
    let server = start(&DnsRecords::new(), vec![failing.addr, good.addr]).await;
    let msg = ask(server.local_addr(), 1, "example.org.", RecordType::A).await;
    assert_eq!(addrs(&msg), vec![UPSTREAM_IP]);
    assert_eq!((failing.udp_queries(), good.udp_queries()), (1, 1));
    server.shutdown().await;
}

#[tokio::test]
async fn no_upstream_is_servfail() {
    let server = start(&web_records(), vec![]).await;
    let msg = ask(server.local_addr(), 5, "example.org.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::ServFail);
    assert_eq!(
        ask(server.local_addr(), 6, "web.", RecordType::A)
            .await
            .answers
            .len(),
        1
    );
    server.shutdown().await;
}

#[tokio::test]
async fn removed_service_is_forwarded() {
    let upstream = FakeUpstream::start(Behaviour::NxDomain).await;
    let records = web_records();
    let server = start(&records, vec![upstream.addr]).await;
    assert_eq!(
        addrs(&ask(server.local_addr(), 1, "web.", RecordType::A).await),
        vec![VIP]
    );
    records.remove_service("WEB");
    for (id, name) in [(2, "web."), (3, "tasks.web.")] {
        let msg = ask(server.local_addr(), id, name, RecordType::A).await;
        assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain, "{name}");
    }
    assert_eq!(upstream.udp_queries(), 2);
    // replace_all drops what it does not name, too.
    records.set_service("api", Some(T1), vec![]).unwrap();
    records
        .replace_all([ServiceEntry {
            name: "web".into(),
            vip: Some(VIP),
            tasks: vec![T1],
        }])
        .unwrap();
    let msg = ask(server.local_addr(), 4, "api.", RecordType::A).await;
    assert_eq!(msg.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(
        addrs(&ask(server.local_addr(), 5, "web.", RecordType::A).await),
        vec![VIP]
    );
    server.shutdown().await;
}

#[tokio::test]
async fn forwards_over_the_limit_are_dropped() {
    let (_hole, silent) = black_hole().await;
    let server = DnsServer::start_with(
        LOOPBACK_ANY_PORT.parse().unwrap(),
        web_records(),
        vec![silent],
        DnsConfig {
            upstream_timeout: TIMEOUT,
            max_forwards: 1,
            ..DnsConfig::default()
        },
    )
    .await
    .unwrap();
    let socket = UdpSocket::bind(LOOPBACK_ANY_PORT).await.unwrap();
    socket.connect(server.local_addr()).await.unwrap();
    socket
        .send(&query_bytes(1, "a.example.", RecordType::A))
        .await
        .unwrap();
    socket
        .send(&query_bytes(2, "b.example.", RecordType::A))
        .await
        .unwrap();
    // Local names are answered while the forward is pending.
    socket
        .send(&query_bytes(3, "web.", RecordType::A))
        .await
        .unwrap();
    let mut ids = Vec::new();
    let mut buf = vec![0; 65535];
    while let Ok(Ok(n)) = tokio::time::timeout(TIMEOUT * 3, socket.recv(&mut buf)).await {
        ids.push(Message::from_vec(&buf[..n]).unwrap().metadata.id);
    }
    assert_eq!(
        ids,
        vec![3, 1],
        "the local answer, then SERVFAIL; the second forward dropped"
    );
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Bad input.

#[tokio::test]
async fn garbage_never_crashes_and_gets_formerr_when_it_has_an_id() {
    let server = start(&web_records(), vec![]).await;
    let addr = server.local_addr();
    let short = Duration::from_millis(200);

    // Too short for a header: dropped.
    for packet in [&[][..], &[0x12], &[0x12, 0x34, 0, 1, 0, 0]] {
        assert_eq!(udp_raw(addr, packet, short).await, None, "{packet:?}");
    }
    // A header announcing a question that is not there: FORMERR with the id.
    let mut packet = vec![0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    let msg = Message::from_vec(&udp_raw(addr, &packet, CLIENT_WAIT).await.unwrap()).unwrap();
    assert_eq!(msg.metadata.id, 0xabcd);
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    assert!(msg.metadata.recursion_desired);
    // Trailing junk after the header.
    packet.extend_from_slice(&[0xff; 40]);
    let msg = Message::from_vec(&udp_raw(addr, &packet, CLIENT_WAIT).await.unwrap()).unwrap();
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    // No question, two questions: FORMERR.
    let none = Message::new(0x11, MessageType::Query, OpCode::Query)
        .to_vec()
        .unwrap();
    let mut two = Message::new(0x22, MessageType::Query, OpCode::Query);
    two.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    two.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    for (packet, id) in [(none, 0x11), (two.to_vec().unwrap(), 0x22)] {
        let msg = Message::from_vec(&udp_raw(addr, &packet, CLIENT_WAIT).await.unwrap()).unwrap();
        assert_eq!(
            (msg.metadata.id, msg.metadata.response_code),
            (id, ResponseCode::FormErr)
        );
    }
    // A response is never answered.
    let mut response = Message::from_vec(&query_bytes(5, "web.", RecordType::A)).unwrap();
    response.metadata.message_type = MessageType::Response;
    assert_eq!(
        udp_raw(addr, &response.to_vec().unwrap(), short).await,
        None
    );
    // Another opcode: NOTIMP.
    let mut status = Message::new(6, MessageType::Query, OpCode::Status);
    status.add_query(Query::query(
        Name::from_ascii("web.").unwrap(),
        RecordType::A,
    ));
    let msg = Message::from_vec(
        &udp_raw(addr, &status.to_vec().unwrap(), CLIENT_WAIT)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(msg.metadata.response_code, ResponseCode::NotImp);

    // Over TCP: FORMERR, then the connection still serves; a header-less frame closes it.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    write_frame(
        &mut stream,
        &[0xab, 0xcd, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 9, 9],
    )
    .await
    .unwrap();
    let msg = Message::from_vec(&read_frame(&mut stream).await.unwrap().unwrap()).unwrap();
    assert_eq!(msg.metadata.response_code, ResponseCode::FormErr);
    write_frame(&mut stream, &query_bytes(7, "web.", RecordType::A))
        .await
        .unwrap();
    let msg = Message::from_vec(&read_frame(&mut stream).await.unwrap().unwrap()).unwrap();
    assert_eq!(addrs(&msg), vec![VIP]);
    write_frame(&mut stream, &[1, 2, 3]).await.unwrap();
    assert!(
        matches!(read_frame(&mut stream).await, Ok(None) | Err(_)),
        "closed"
    );

    // Still serving.
    assert_eq!(addrs(&ask(addr, 8, "web.", RecordType::A).await), vec![VIP]);
    server.shutdown().await;
}

/// Random bytes and bit-flipped queries through the pure core: never a panic, and any
/// reply is a response with the packet's id.
#[test]
fn random_and_mutated_packets_never_panic() {
    let records = web_records();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let valid = [
        query_bytes(1, "web.", RecordType::A),
        query_bytes(2, "tasks.web.", RecordType::AAAA),
        query_bytes(3, "example.org.", RecordType::MX),
    ];
    for round in 0..20_000 {
        let packet: Vec<u8> = if round % 2 == 0 {
            let len = (next() % 80) as usize;
            (0..len).map(|_| next() as u8).collect()
        } else {
            let mut p = valid[round % 3].clone();
            for _ in 0..=(next() % 4) {
                let i = (next() as usize) % p.len();
                p[i] ^= 1 << (next() % 8);
            }
            if next() % 4 == 0 {
                p.truncate((next() as usize) % p.len());
            }
            p
        };
        for transport in [Transport::Udp, Transport::Tcp] {
            if let Handling::Reply { bytes, .. } = handle(&packet, &records, transport) {
                assert!(bytes.len() >= 12);
                assert_eq!(bytes[..2], packet[..2], "the id is answered");
                assert_eq!(bytes[2] & 0x80, 0x80, "a response");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Lifecycle.

#[tokio::test]
async fn shutdown_frees_the_port_and_a_taken_port_is_named() {
    let server = start(&web_records(), vec![]).await;
    let addr = server.local_addr();
    let err = DnsServer::start(addr, DnsRecords::new(), vec![])
        .await
        .unwrap_err();
    assert!(matches!(err, DnsError::Bind { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&addr.to_string()), "{text}");
    assert!(text.to_lowercase().contains("in use"), "{text}");

    server.shutdown().await;
    let again = DnsServer::start(addr, web_records(), vec![]).await.unwrap();
    assert_eq!(again.local_addr(), addr);
    assert_eq!(addrs(&ask(addr, 1, "web.", RecordType::A).await), vec![VIP]);
    drop(again);
}

#[tokio::test]
async fn upstreams_skip_repeats_and_the_server_itself() {
    let server = start(&DnsRecords::new(), vec![]).await;
    let me = server.local_addr();
    let other: SocketAddr = "127.0.0.1:5353".parse().unwrap();
    server.set_upstreams(vec![me, other, other]);
    assert_eq!(server.upstreams(), vec![other]);
    server.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Records and resolv.conf.

#[test]
fn records_check_names_and_keep_addresses_once() {
    let records = DnsRecords::new();
    for bad in ["", "a.b", "sp ace", "é", &"x".repeat(64)] {
        let err = records.set_service(bad, None, vec![]).unwrap_err();
        assert!(matches!(err, DnsError::InvalidName { .. }), "{bad:?}");
    }
    records
        .set_service("my_svc-1", None, vec![T1, T2, T1, T1])
        .unwrap();
    assert_eq!(
        sorted(records.lookup("tasks.my_svc-1").unwrap().addrs),
        vec![T1, T2]
    );

    // replace_all with a bad name changes nothing; a repeated name: the last wins.
    let entry = |name: &str, vip| ServiceEntry {
        name: name.into(),
        vip,
        tasks: vec![],
    };
    assert!(
        records
            .replace_all([entry("ok", None), entry("no.pe", None)])
            .is_err()
    );
    assert_eq!(records.len(), 1);
    records
        .replace_all([entry("a", Some(T1)), entry("A", Some(T2))])
        .unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records.lookup("a").unwrap().addrs, vec![T2]);
    assert_eq!(records.lookup("my_svc-1"), None);

    // Clones share the table.
    let clone = records.clone();
    clone.remove_service("a");
    assert!(records.is_empty());
}

#[test]
fn resolv_conf_nameservers() {
    let text = "\
# a comment
; nameserver 9.9.9.9
nameserver 127.0.0.53
  nameserver   1.1.1.1   # trailing comment
nameserver 1.1.1.1
nameserver 2001:db8::1
nameserver fe80::1%2
nameserver fe80::1%eth0
nameserver not-an-address
nameserver
search corp.example
options edns0 trust-ad
nameserver 8.8.8.8\r
";
    let got = upstreams_from_resolv_conf(text);
    let want: Vec<SocketAddr> = [
        "127.0.0.53:53",
        "1.1.1.1:53",
        "[2001:db8::1]:53",
        "[fe80::1%2]:53",
        "8.8.8.8:53",
    ]
    .iter()
    .map(|s| s.parse().unwrap())
    .collect();
    assert_eq!(got, want);
    assert!(upstreams_from_resolv_conf("").is_empty());
}
