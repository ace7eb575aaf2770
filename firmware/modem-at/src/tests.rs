//! The engine and the modem against transcripts of modem sessions (the
//! modem's side as it prints it: echo, information text, result codes, URCs
//! wherever they fall), and a property: any bytes, any timing — every
//! command gets exactly one answer and nothing panics.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use crate::engine::{AtEngine, AtError, Event};
use crate::modem::{Modem, ModemConfig, ModemEvent, Phase};
use crate::parse::{RegStatus, SimState};
use crate::profile::Profile;

const T: Duration = Duration::from_secs(5);

fn drain(e: &mut AtEngine) -> Vec<Event> {
    std::iter::from_fn(|| e.poll_event()).collect()
}

#[test]
fn echo_urcs_and_information_text_are_told_apart() {
    let now = Instant::now();
    let mut e = AtEngine::new();
    e.send("AT+CSQ", T, now);
    assert_eq!(e.poll_transmit(), Some(b"AT+CSQ\r".to_vec()));
    // Echo on, a URC in the middle of the answer, split across reads.
    e.handle_input(b"AT+CSQ\r\r\n+CEREG: 1,\"1A2B\",\"01C3D4E5\",7\r\n+CS", now);
    e.handle_input(b"Q: 18,99\r\n\r\nOK\r\n", now);
    assert_eq!(
        drain(&mut e),
        vec![
            Event::Urc("+CEREG: 1,\"1A2B\",\"01C3D4E5\",7".into()),
            Event::Done {
                id: crate::CommandId(0),
                command: "AT+CSQ".into(),
                result: Ok(vec!["+CSQ: 18,99".into()]),
            }
        ]
    );
    // A URC with nothing running.
    e.handle_input(b"\r\nRING\r\n", now);
    assert_eq!(drain(&mut e), vec![Event::Urc("RING".into())]);
}

#[test]
fn final_result_codes() {
    let now = Instant::now();
    let mut e = AtEngine::new();
    for (reply, want) in [
        (&b"\r\n+CME ERROR: 10\r\n"[..], AtError::Cme("10".into())),
        (b"\r\n+CMS ERROR: 500\r\n", AtError::Cms("500".into())),
        (b"\r\nERROR\r\n", AtError::Error),
        (b"\r\nNO CARRIER\r\n", AtError::Call("NO CARRIER".into())),
    ] {
        e.send("AT+CPIN?", T, now);
        e.poll_transmit();
        e.handle_input(reply, now);
        match drain(&mut e).as_slice() {
            [
                Event::Done {
                    result: Err(err), ..
                },
            ] => assert_eq!(err, &want),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(AtError::Cme("10".into()).cme_code(), Some(10));
    assert_eq!(AtError::Cme("SIM not inserted".into()).cme_code(), None);
}

#[test]
fn garbage_is_dropped_and_the_answer_survives() {
    let now = Instant::now();
    let mut e = AtEngine::new();
    e.send("AT+COPS?", T, now);
    e.poll_transmit();
    let mut junk = vec![b'x'; 3000];
    junk.extend_from_slice(b"\r\n\xff\xfe\x80\r\n");
    e.handle_input(&junk, now);
    e.handle_input(b"+COPS: 0,0,\"Telekom.de\",7\r\nOK\r\n", now);
    assert_eq!(e.garbage_lines, 2);
    match drain(&mut e).as_slice() {
        [Event::Done { result: Ok(l), .. }] => {
            assert_eq!(l, &vec!["+COPS: 0,0,\"Telekom.de\",7".to_string()])
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_timeout_answers_the_command_and_resynchronises_before_the_next() {
    let t0 = Instant::now();
    let mut e = AtEngine::new();
    e.send("AT+CGACT=1,1", T, t0);
    assert_eq!(e.poll_transmit(), Some(b"AT+CGACT=1,1\r".to_vec()));
    e.send("AT+CSQ", T, t0);
    assert_eq!(e.poll_transmit(), None, "one command at a time");
    e.handle_timeout(t0 + T);
    match drain(&mut e).as_slice() {
        [
            Event::Done {
                command,
                result: Err(AtError::Timeout(d)),
                ..
            },
        ] => {
            assert_eq!(command, "AT+CGACT=1,1");
            assert_eq!(*d, T);
        }
        other => panic!("{other:?}"),
    }
    // A bare AT first; its OK releases the queued command.
    assert_eq!(e.poll_transmit(), Some(b"AT\r".to_vec()));
    e.handle_input(b"\r\nOK\r\n", t0 + T);
    assert!(drain(&mut e).is_empty());
    assert_eq!(e.poll_transmit(), Some(b"AT+CSQ\r".to_vec()));
}

/// Plays the modem's side of a conversation: for each command the driver
/// writes, the expected command and what the modem answers.
fn converse(m: &mut Modem, now: Instant, script: &[(&str, &str)]) -> Vec<ModemEvent> {
    for (want, reply) in script {
        let sent = m
            .poll_transmit()
            .map(|b| String::from_utf8_lossy(&b).into_owned());
        assert_eq!(
            sent.as_deref(),
            Some(format!("{want}\r").as_str()),
            "expected {want}"
        );
        m.handle_input(reply.as_bytes(), now);
    }
    std::iter::from_fn(|| m.poll_event()).collect()
}

const OK: &str = "\r\nOK\r\n";

fn cfg() -> ModemConfig {
    ModemConfig {
        pin: Some("4711".into()),
        ..ModemConfig::new("internet.telekom")
    }
}

/// Probing to online on a Quectel EC25 whose SIM wants a PIN.
fn bring_up(now: Instant) -> (Modem, Vec<ModemEvent>) {
    let mut m = Modem::new(cfg());
    m.port_opened(now);
    let evs = converse(
        &mut m,
        now,
        &[
            ("AT", "AT\r\r\nOK\r\n"),
            ("ATE0", "ATE0\r\r\nOK\r\n"),
            ("AT+CMEE=1", OK),
            (
                "ATI",
                "\r\nQuectel\r\nEC25\r\nRevision: EC25EFAR06A06M4G\r\n\r\nOK\r\n",
            ),
            ("AT+CPIN?", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"),
            ("AT+CPIN=\"4711\"", OK),
            ("AT+CPIN?", "\r\n+CPIN: READY\r\n\r\nOK\r\n"),
            ("AT+CGDCONT=1,\"IP\",\"internet.telekom\"", OK),
            ("AT+CREG=2", OK),
            ("AT+CEREG=2", OK),
            ("AT+QURCCFG=\"urcport\",\"usbat\"", OK),
            ("AT+COPS=0", "\r\nOK\r\n\r\n+CEREG: 2\r\n"),
            ("AT+CEREG?", "\r\n+CEREG: 2,2\r\n\r\nOK\r\n"),
            ("AT+CREG?", "\r\n+CREG: 2,2\r\n\r\nOK\r\n"),
        ],
    );
    (m, evs)
}

#[test]
fn bring_up_of_a_quectel_with_a_pin_to_online() {
    let t0 = Instant::now();
    let (mut m, evs) = bring_up(t0);
    assert!(evs.contains(&ModemEvent::Identified {
        model: "Quectel EC25 Revision: EC25EFAR06A06M4G".into(),
        profile: Profile::QuectelEc2x
    }));
    assert!(evs.contains(&ModemEvent::Sim(SimState::Pin)));
    assert!(evs.contains(&ModemEvent::Sim(SimState::Ready)));
    assert_eq!(m.phase(), Phase::Registering);
    // Not registered yet: polled again after poll_interval; the network
    // registers us in between (URC).
    assert_eq!(m.poll_transmit(), None);
    let t1 = t0 + Duration::from_secs(2);
    m.handle_input(b"\r\n+CEREG: 1,\"1A2B\",\"01C3D4E5\",7\r\n", t1);
    let evs = converse(
        &mut m,
        t1,
        &[
            ("AT+QNETDEVCTL=1,1,1", OK),
            (
                "AT+CGPADDR=1",
                "\r\n+CGPADDR: 1,\"10.64.12.7\"\r\n\r\nOK\r\n",
            ),
        ],
    );
    let addr: IpAddr = "10.64.12.7".parse().unwrap();
    assert!(
        evs.contains(&ModemEvent::Registration(RegStatus::Home)),
        "{evs:?}"
    );
    assert!(evs.contains(&ModemEvent::Address(Some(addr))), "{evs:?}");
    assert_eq!(m.phase(), Phase::Online);
    // The first poll is due at once.
    m.handle_timeout(t1);
    let evs = converse(
        &mut m,
        t1,
        &[
            ("AT+CSQ", "\r\n+CSQ: 18,99\r\n\r\nOK\r\n"),
            ("AT+CESQ", "\r\n+CESQ: 99,99,255,255,24,58\r\n\r\nOK\r\n"),
            ("AT+COPS?", "\r\n+COPS: 0,0,\"Telekom.de\",7\r\n\r\nOK\r\n"),
            (
                "AT+CEREG?",
                "\r\n+CEREG: 2,1,\"1A2B\",\"01C3D4E5\",7\r\n\r\nOK\r\n",
            ),
            (
                "AT+CGPADDR=1",
                "\r\n+CGPADDR: 1,\"10.64.12.7\"\r\n\r\nOK\r\n",
            ),
        ],
    );
    assert!(
        evs.iter()
            .any(|e| matches!(e, ModemEvent::Signal(s) if s.dbm() == Some(-83))),
        "{evs:?}"
    );
    assert!(evs.contains(&ModemEvent::Operator(Some("Telekom.de".into()))));
    // Unchanged address: not reported again.
    assert!(!evs.iter().any(|e| matches!(e, ModemEvent::Address(_))));
    assert_eq!(m.poll_timeout(), Some(t1 + Duration::from_secs(5)));
}

#[test]
fn losing_registration_drops_the_address_and_a_reboot_starts_over() {
    let t0 = Instant::now();
    let (mut m, _) = bring_up(t0);
    m.handle_input(b"\r\n+CEREG: 1\r\n", t0);
    converse(
        &mut m,
        t0,
        &[
            ("AT+QNETDEVCTL=1,1,1", OK),
            (
                "AT+CGPADDR=1",
                "\r\n+CGPADDR: 1,\"10.64.12.7\"\r\n\r\nOK\r\n",
            ),
        ],
    );
    assert_eq!(m.phase(), Phase::Online);
    // Out of coverage.
    m.handle_input(b"\r\n+CEREG: 4\r\n", t0);
    let evs: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(evs.contains(&ModemEvent::Address(None)), "{evs:?}");
    assert_eq!(m.phase(), Phase::Registering);
    converse(
        &mut m,
        t0,
        &[
            ("AT+CEREG?", "\r\n+CEREG: 2,4\r\n\r\nOK\r\n"),
            ("AT+CREG?", "\r\n+CREG: 2,4\r\n\r\nOK\r\n"),
        ],
    );
    // The module resets itself.
    m.handle_input(b"\r\nRDY\r\n", t0);
    let evs: Vec<_> = std::iter::from_fn(|| m.poll_event()).collect();
    assert!(
        evs.iter()
            .any(|e| matches!(e, ModemEvent::Restarted(w) if w.contains("RDY"))),
        "{evs:?}"
    );
    assert_eq!(m.phase(), Phase::Probing);
    assert_eq!(m.poll_transmit(), Some(b"AT\r".to_vec()));
}

#[test]
fn sim_problems_stop_with_a_reason_and_never_retry_a_pin() {
    let t0 = Instant::now();
    for (pin, replies, want) in [
        (
            Some("0000"),
            vec![
                ("AT+CPIN?", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"),
                ("AT+CPIN=\"0000\"", "\r\n+CME ERROR: 16\r\n"),
                ("AT+CPIN?", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n"),
            ],
            "refused the configured PIN",
        ),
        (
            None,
            vec![("AT+CPIN?", "\r\n+CPIN: SIM PIN\r\n\r\nOK\r\n")],
            "none is configured",
        ),
        (
            Some("1"),
            vec![("AT+CPIN?", "\r\n+CPIN: SIM PUK\r\n\r\nOK\r\n")],
            "PUK",
        ),
        (
            None,
            vec![("AT+CPIN?", "\r\n+CME ERROR: 10\r\n")],
            "no SIM answer",
        ),
    ] {
        let mut m = Modem::new(ModemConfig {
            pin: pin.map(String::from),
            ..ModemConfig::new("apn")
        });
        m.port_opened(t0);
        let mut script = vec![
            ("AT", OK),
            ("ATE0", OK),
            ("AT+CMEE=1", OK),
            ("ATI", "\r\nGeneric LTE\r\n\r\nOK\r\n"),
        ];
        script.extend(replies);
        let evs = converse(&mut m, t0, &script);
        assert_eq!(m.phase(), Phase::Failed, "{want}");
        assert!(
            evs.iter()
                .any(|e| matches!(e, ModemEvent::Failed(w) if w.contains(want))),
            "{want}: {evs:?}"
        );
        assert_eq!(m.poll_transmit(), None);
    }
}

#[test]
fn a_silent_modem_is_restarted() {
    let t0 = Instant::now();
    let mut m = Modem::new(ModemConfig::new("apn"));
    assert_eq!(m.poll_transmit(), None, "nothing before the port is open");
    m.port_opened(t0);
    let mut t = t0;
    let mut restarted = false;
    for _ in 0..10 {
        while m.poll_transmit().is_some() {}
        t += Duration::from_secs(6);
        m.handle_timeout(t);
        if std::iter::from_fn(|| m.poll_event())
            .any(|e| matches!(e, ModemEvent::Restarted(ref w) if w.contains("stopped answering")))
        {
            restarted = true;
            break;
        }
    }
    assert!(restarted);
    assert_eq!(m.phase(), Phase::Probing);
    // Nothing more until the driver has reopened the port.
    assert_eq!(m.poll_transmit(), None);
    m.port_opened(t);
    assert_eq!(m.poll_transmit(), Some(b"AT\r".to_vec()));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the modem sends, whenever: no panic, and every command
    /// gets exactly one Done once time runs out.
    #[test]
    fn every_command_is_answered_once(
        cmds in proptest::collection::vec("AT\\+[A-Z]{2,6}\\??", 1..8),
        chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..20),
        words in proptest::collection::vec(prop_oneof![
            Just("\r\nOK\r\n".to_string()), Just("\r\nERROR\r\n".to_string()),
            Just("\r\n+CME ERROR: 3\r\n".to_string()), Just("\r\n+CEREG: 1\r\n".to_string()),
            Just("RDY\r\n".to_string()), Just("\r".to_string()),
        ], 0..20),
    ) {
        let t0 = Instant::now();
        let mut e = AtEngine::new();
        let ids: Vec<_> = cmds.iter().map(|c| e.send(c, T, t0)).collect();
        let mut t = t0;
        for (i, c) in chunks.iter().enumerate() {
            while e.poll_transmit().is_some() {}
            e.handle_input(c, t);
            if let Some(w) = words.get(i) {
                e.handle_input(w.as_bytes(), t);
            }
            t += Duration::from_millis(700);
            e.handle_timeout(t);
        }
        for _ in 0..(cmds.len() * 2 + 2) {
            while e.poll_transmit().is_some() {}
            t += T;
            e.handle_timeout(t);
        }
        let mut done: Vec<_> = drain(&mut e)
            .into_iter()
            .filter_map(|ev| match ev { Event::Done { id, .. } => Some(id), Event::Urc(_) => None })
            .collect();
        done.sort();
        prop_assert_eq!(done, ids);
        prop_assert_eq!(e.pending(), 0);
    }
}
