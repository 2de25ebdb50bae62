//! The blob against the documented example, embedded bodies, generated sessions and hostile input.

use media_session::{
    AudioFormat, AudioSocketSettings, BlobError, MAX_BLOB_BYTES, MediaSession, MpUri, MpUriError,
    SessionError, StreamDirection, VbssSocketSettings, VideoFormat, VideoSocketSettings, parse,
    parse_blob_or_body,
};
use proptest::prelude::*;
use uuid::Uuid;

const DOCUMENTED: &str = include_str!("../testdata/documented-blob.json");
const DOCUMENTED_ESCAPED: &str = include_str!("../testdata/documented-blob-escaped.txt");
const CALL_BODY: &str = include_str!("../testdata/create-call-p2p-app-hosted.json");

fn uuid(s: &str) -> Uuid {
    Uuid::parse_str(s).unwrap()
}

/// The documented example with one field replaced by raw JSON `value` (or removed when `None`).
fn documented_with(field: &str, value: Option<&str>) -> String {
    let mut v: serde_json::Value = serde_json::from_str(DOCUMENTED).unwrap();
    let map = v.as_object_mut().unwrap();
    match value {
        Some(raw) => {
            map.insert(field.into(), serde_json::from_str(raw).unwrap());
        }
        None => {
            map.remove(field);
        }
    }
    v.to_string()
}

#[test]
fn documented_example_round_trips_byte_identical() {
    let config = parse(DOCUMENTED).unwrap();
    assert_eq!(
        config.mp_uri.to_string(),
        "net.tcp://bot.contoso.com:18732/MediaProcessor"
    );
    assert_eq!(
        config.audio_render_contexts,
        [uuid("14778cc4-f54c-43c7-989f-9092e34ef784")]
    );
    assert_eq!(
        config.audio_source_contexts,
        [uuid("a5dcfc9b-5a54-48ef-86f5-1fdd8508741a")]
    );
    assert!(config.video_render_contexts.is_empty());
    assert_eq!(config.data_render_contexts, None);
    assert_eq!(config.supported_audio_format, AudioFormat::Pcm16K);
    assert_eq!(
        config.mp_media_session_id,
        uuid("2379cf46-acf3-4fef-a914-be9627075320")
    );
    assert_eq!(config.region_affinity, None);
    assert_eq!(
        config.skype_media_bots_version.as_deref(),
        Some("1.11.1.0086")
    );
    assert_eq!(config.media_stack_version.as_deref(), Some("2018.53.1.1"));
    assert_eq!(config.mp_version.as_deref(), Some("7.2.0.3881"));
    assert_eq!(
        config.call_id,
        Some(uuid("1b69b141-7f1a-4033-9c34-202737190a20"))
    );
    assert!(config.unknown_fields.is_empty());
    assert_eq!(config.to_blob(), DOCUMENTED);
}

#[test]
fn documented_escaped_form_and_string_literal_parse_the_same() {
    let expected = parse(DOCUMENTED).unwrap();
    assert_eq!(parse(DOCUMENTED_ESCAPED).unwrap(), expected);
    let literal = serde_json::Value::String(DOCUMENTED.into()).to_string();
    assert_eq!(parse(&literal).unwrap(), expected);
    assert_eq!(expected.to_json_string_literal(), literal);
    assert_eq!(format!("\"{}\"", DOCUMENTED_ESCAPED.trim()), literal);
}

#[test]
fn blob_embedded_in_create_call_body_is_extracted() {
    // Escaped once more on the wire: the body holds the blob as a JSON string.
    assert!(CALL_BODY.contains(r#""blob": "{\"mpUri\":"#));
    let config = parse_blob_or_body(CALL_BODY).unwrap();
    assert_eq!(config, parse(DOCUMENTED).unwrap());
    assert_eq!(config.to_blob(), DOCUMENTED);

    let no_blob =
        r##"{"mediaConfig":{"@odata.type":"#microsoft.graph.serviceHostedMediaConfig"}}"##;
    assert_eq!(parse_blob_or_body(no_blob), Err(BlobError::NoBlobInPayload));
    let not_string = r#"{"mediaConfig":{"blob":{}}}"#;
    assert_eq!(
        parse_blob_or_body(not_string).unwrap_err().field(),
        Some("mediaConfig.blob")
    );
}

#[test]
fn session_blob_has_documented_order_and_nulls() {
    let mut ids = (1u128..).map(Uuid::from_u128);
    let session = MediaSession::builder(MpUri::new("127.0.0.1", 18732).unwrap())
        .build_with_ids(&mut || ids.next().unwrap())
        .unwrap();
    let blob = session.blob();
    let value: serde_json::Value = serde_json::from_str(&blob).unwrap();
    let keys: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    // serde_json's map is sorted unless preserve_order is on, so check order in the text.
    let positions: Vec<usize> = media_session::FIELDS
        .iter()
        .map(|f| blob.find(&format!("\"{f}\":")).unwrap())
        .collect();
    let sorted = {
        let mut p = positions.clone();
        p.sort();
        p
    };
    assert_eq!(positions, sorted, "fields out of documented order: {blob}");
    assert_eq!(keys.len(), media_session::FIELDS.len());
    assert!(blob.contains(r#""dataRenderContexts":null,"dataSourceContexts":null"#));
    assert!(blob.contains(r#""regionAffinity":null"#));
    assert!(blob.ends_with(r#""callId":null}"#), "{blob}");
    assert!(blob.starts_with(
        r#"{"mpUri":"net.tcp://127.0.0.1:18732/MediaProcessor","audioRenderContexts":["00000000-0000-0000-0000-000000000002"],"videoRenderContexts":[],"audioSourceContexts":["00000000-0000-0000-0000-000000000003"]"#
    ), "{blob}");
}

#[test]
fn contexts_follow_direction() {
    let mp = MpUri::new("bot.example.com", 443).unwrap();
    for direction in StreamDirection::ALL {
        let session = MediaSession::builder(mp.clone())
            .audio(AudioSocketSettings::new(
                direction,
                AudioFormat::Pcm44KStereo,
            ))
            .build()
            .unwrap();
        let config = session.blob_config();
        assert_eq!(
            config.audio_render_contexts.len(),
            usize::from(direction.receives())
        );
        assert_eq!(
            config.audio_source_contexts.len(),
            usize::from(direction.sends())
        );
        assert_eq!(config.supported_audio_format, AudioFormat::Pcm44KStereo);
    }
}

#[test]
fn video_and_vbss_contexts_and_formats() {
    let mp = MpUri::new("bot.example.com", 443).unwrap();
    let session = MediaSession::builder(mp.clone())
        .add_video(VideoSocketSettings {
            direction: StreamDirection::SendReceive,
            receive_formats: vec![VideoFormat::H264, VideoFormat::Yuv],
        })
        .add_video(VideoSocketSettings {
            direction: StreamDirection::SendOnly,
            receive_formats: vec![],
        })
        .vbss(VbssSocketSettings::default())
        .build()
        .unwrap();
    let config = session.blob_config();
    assert_eq!(config.video_render_contexts.len(), 2, "one video + vbss");
    assert_eq!(config.video_source_contexts.len(), 2);
    assert_eq!(
        config.video_sink_encoding_formats,
        [VideoFormat::H264, VideoFormat::Yuv]
    );
    assert_eq!(
        config.video_render_contexts[1],
        session.vbss().unwrap().1,
        "vbss render context follows the video sockets'"
    );

    let too_many = (0..11).fold(MediaSession::builder(mp.clone()), |b, _| {
        b.add_video(VideoSocketSettings::default())
    });
    assert_eq!(too_many.build(), Err(SessionError::TooManyVideoSockets(11)));
    let other = MediaSession::builder(mp)
        .add_video(VideoSocketSettings {
            direction: StreamDirection::ReceiveOnly,
            receive_formats: vec![VideoFormat::Other("Rgb24".into())],
        })
        .build();
    assert_eq!(
        other,
        Err(SessionError::UnsupportedVideoFormat("Rgb24".into()))
    );
}

#[test]
fn unmixed_setting_stays_out_of_the_blob() {
    let mp = MpUri::new("bot.example.com", 443).unwrap();
    let mut ids = (1u128..).map(Uuid::from_u128);
    let mut ids2 = (1u128..).map(Uuid::from_u128);
    let mixed = MediaSession::builder(mp.clone())
        .build_with_ids(&mut || ids.next().unwrap())
        .unwrap();
    let unmixed = MediaSession::builder(mp)
        .audio(AudioSocketSettings::default().receive_unmixed(true))
        .build_with_ids(&mut || ids2.next().unwrap())
        .unwrap();
    assert!(unmixed.audio().receive_unmixed);
    assert_eq!(mixed.blob(), unmixed.blob());
}

#[test]
fn call_id_is_written_once_known() {
    let mp = MpUri::new("bot.example.com", 443).unwrap();
    let mut session = MediaSession::builder(mp).build().unwrap();
    assert_eq!(parse(&session.blob()).unwrap().call_id, None);
    let call = Uuid::new_v4();
    session.set_call_id(call);
    assert!(
        session
            .blob()
            .ends_with(&format!("\"callId\":\"{call}\"}}"))
    );
    assert_eq!(parse(&session.blob()).unwrap().call_id, Some(call));
}

#[test]
fn tolerates_older_and_newer_libraries() {
    // [null] is how older libraries say "no context".
    let older = documented_with("videoRenderContexts", Some("[null]"));
    assert!(parse(&older).unwrap().video_render_contexts.is_empty());
    let nulls_mixed = documented_with(
        "audioRenderContexts",
        Some(r#"[null, "14778cc4-f54c-43c7-989f-9092e34ef784"]"#),
    );
    assert_eq!(parse(&nulls_mixed).unwrap().audio_render_contexts.len(), 1);

    let newer = documented_with("someFutureField", Some(r#"{"nested": [1, 2]}"#));
    let config = parse(&newer).unwrap();
    assert_eq!(config.unknown_fields, ["someFutureField"]);

    for optional in [
        "regionAffinity",
        "callId",
        "skypeMediaBotsVersion",
        "mediaStackVersion",
        "mpVersion",
        "dataRenderContexts",
        "videoSinkEncodingFormats",
        "videoRenderContexts",
        "supportedAudioFormat",
    ] {
        let missing = documented_with(optional, None);
        assert!(
            parse(&missing).is_ok(),
            "missing {optional} should be accepted"
        );
    }
    let no_format = parse(&documented_with("supportedAudioFormat", None)).unwrap();
    assert_eq!(no_format.supported_audio_format, AudioFormat::Pcm16K);
}

fn rejected(field: &str, value: Option<&str>) -> BlobError {
    let input = documented_with(field, value);
    parse(&input).expect_err(&format!("{field} = {value:?} should be rejected"))
}

#[test]
fn rejects_missing_required_fields() {
    assert_eq!(rejected("mpUri", None), BlobError::Missing("mpUri"));
    assert_eq!(rejected("mpUri", Some("null")), BlobError::Missing("mpUri"));
    assert_eq!(
        rejected("mpMediaSessionId", None),
        BlobError::Missing("mpMediaSessionId")
    );
}

#[test]
fn rejects_wrong_types_naming_the_field() {
    let cases = [
        ("mpUri", "42", "mpUri"),
        (
            "audioRenderContexts",
            r#""14778cc4-f54c-43c7-989f-9092e34ef784""#,
            "audioRenderContexts",
        ),
        ("audioSourceContexts", "[7]", "audioSourceContexts[0]"),
        ("dataSourceContexts", "{}", "dataSourceContexts"),
        ("supportedAudioFormat", "1", "supportedAudioFormat"),
        (
            "videoSinkEncodingFormats",
            "[true]",
            "videoSinkEncodingFormats[0]",
        ),
        ("regionAffinity", "[]", "regionAffinity"),
        ("mpVersion", "7.2", "mpVersion"),
        ("callId", "false", "callId"),
    ];
    for (field, value, path) in cases {
        let err = rejected(field, Some(value));
        assert!(
            matches!(err, BlobError::WrongType { .. }),
            "{field}: {err:?}"
        );
        assert_eq!(err.field(), Some(path), "{field}");
        assert!(err.to_string().contains(path), "{err}");
    }
}

#[test]
fn rejects_malformed_uuids() {
    let cases = [
        (
            "mpMediaSessionId",
            r#""2379cf46-acf3-4fef-a914""#,
            "mpMediaSessionId",
        ),
        ("callId", r#""not-a-uuid""#, "callId"),
        (
            "audioRenderContexts",
            r#"["14778cc4-f54c-43c7-989f-9092e34ef78g"]"#,
            "audioRenderContexts[0]",
        ),
        // Braced and simple forms are valid UUIDs elsewhere but never what the service writes.
        (
            "callId",
            r#""{1b69b141-7f1a-4033-9c34-202737190a20}""#,
            "callId",
        ),
        ("callId", r#""1b69b1417f1a40339c34202737190a20""#, "callId"),
    ];
    for (field, value, path) in cases {
        let err = rejected(field, Some(value));
        assert!(matches!(err, BlobError::InvalidUuid { .. }), "{err:?}");
        assert_eq!(err.field(), Some(path));
    }
}

#[test]
fn rejects_bad_mp_uri() {
    let cases = [
        (
            r#""https://bot.contoso.com:18732/MediaProcessor""#,
            MpUriError::Scheme,
        ),
        (
            r#""net.tcp://bot.contoso.com:18732/Media""#,
            MpUriError::Path,
        ),
        (
            r#""net.tcp://bot.contoso.com/MediaProcessor""#,
            MpUriError::Port,
        ),
        (
            r#""net.tcp://bot contoso:18732/MediaProcessor""#,
            MpUriError::Host("bot contoso".into()),
        ),
    ];
    for (value, reason) in cases {
        match rejected("mpUri", Some(value)) {
            BlobError::InvalidMpUri { reason: got, .. } => assert_eq!(got, reason, "{value}"),
            other => panic!("{value}: {other:?}"),
        }
    }
}

#[test]
fn rejects_unknown_audio_format() {
    assert_eq!(
        rejected("supportedAudioFormat", Some(r#""Pcm8K""#)),
        BlobError::UnknownAudioFormat("Pcm8K".into())
    );
}

#[test]
fn rejects_duplicate_context_ids() {
    let within = rejected(
        "audioRenderContexts",
        Some(r#"["14778cc4-f54c-43c7-989f-9092e34ef784","14778cc4-f54c-43c7-989f-9092e34ef784"]"#),
    );
    assert!(
        matches!(within, BlobError::DuplicateContext { .. }),
        "{within:?}"
    );
    // The same id as the documented audio render context, reused as a video source.
    let across = rejected(
        "videoSourceContexts",
        Some(r#"["14778cc4-f54c-43c7-989f-9092e34ef784"]"#),
    );
    assert_eq!(
        across,
        BlobError::DuplicateContext {
            id: uuid("14778cc4-f54c-43c7-989f-9092e34ef784"),
            first: "audioRenderContexts".into(),
            second: "videoSourceContexts".into(),
        }
    );
}

#[test]
fn rejects_oversized_and_overlong_input() {
    let padding = " ".repeat(MAX_BLOB_BYTES);
    let big = format!("{DOCUMENTED}{padding}");
    assert!(matches!(parse(&big), Err(BlobError::TooLarge { .. })));

    let ids: Vec<String> = (0..65)
        .map(|i| format!("\"{}\"", Uuid::from_u128(i + 1)))
        .collect();
    let list = format!("[{}]", ids.join(","));
    assert!(matches!(
        rejected("videoRenderContexts", Some(&list)),
        BlobError::TooLong { .. }
    ));
    let long = format!("\"{}\"", "x".repeat(300));
    assert!(matches!(
        rejected("regionAffinity", Some(&long)),
        BlobError::TooLong { .. }
    ));
}

#[test]
fn rejects_non_objects_and_garbage_without_panicking() {
    for input in [
        "",
        "null",
        "[]",
        "\"\"",
        "\"[1]\"",
        "{",
        "{\\\"",
        "\u{0}",
        "42",
        "\"\\\"{}\\\"\"",
    ] {
        let err = parse(input).expect_err(input);
        assert!(
            matches!(err, BlobError::Syntax(_) | BlobError::NotAnObject(_)),
            "{input:?}: {err:?}"
        );
    }
    // Deep nesting stops at serde_json's recursion limit instead of the stack.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    assert!(matches!(parse(&deep), Err(BlobError::Syntax(_))));
    let deep_field = documented_with("x", Some("1")).replace(
        "\"x\":1",
        &format!("\"x\":{}0{}", "[".repeat(5000), "]".repeat(5000)),
    );
    assert!(matches!(parse(&deep_field), Err(BlobError::Syntax(_))));
}

#[test]
fn error_messages_stay_one_line_and_short() {
    let long = format!("\"net.tcp://{}:1/MediaProcessor\"", "a".repeat(5000));
    let err = rejected("mpUri", Some(&long));
    let text = err.to_string();
    assert!(!text.contains('\n'));
    assert!(text.len() < 300, "{text}");
}

fn arb_direction() -> impl Strategy<Value = StreamDirection> {
    prop::sample::select(StreamDirection::ALL.to_vec())
}

fn arb_video_socket() -> impl Strategy<Value = VideoSocketSettings> {
    (
        arb_direction(),
        prop::sample::subsequence(vec![VideoFormat::H264, VideoFormat::Yuv], 1..=2),
    )
        .prop_map(|(direction, receive_formats)| VideoSocketSettings {
            direction,
            receive_formats,
        })
}

fn arb_host() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z][a-z0-9-]{0,10}[a-z0-9](\\.[a-z][a-z0-9]{0,8}){0,3}",
        any::<[u8; 4]>().prop_map(|o| std::net::Ipv4Addr::from(o).to_string()),
        any::<u128>().prop_map(|v| std::net::Ipv6Addr::from(v).to_string()),
    ]
}

prop_compose! {
    fn arb_session()(
        host in arb_host(),
        port in 1u16..,
        direction in arb_direction(),
        format in prop::sample::select(AudioFormat::ALL.to_vec()),
        unmixed in any::<bool>(),
        video in prop::collection::vec(arb_video_socket(), 0..=10),
        vbss in any::<bool>(),
        call_id in prop::option::of(any::<u128>()),
        region in prop::option::of("[ -~]{0,20}"),
    ) -> MediaSession {
        let mut builder = MediaSession::builder(MpUri::new(&host, port).unwrap())
            .audio(AudioSocketSettings::new(direction, format).receive_unmixed(unmixed));
        for v in video {
            builder = builder.add_video(v);
        }
        if vbss {
            builder = builder.vbss(VbssSocketSettings::default());
        }
        if let Some(id) = call_id {
            builder = builder.call_id(Uuid::from_u128(id));
        }
        if let Some(region) = region {
            builder = builder.region_affinity(region);
        }
        builder.build().unwrap()
    }
}

proptest! {
    #[test]
    fn parse_of_blob_is_the_session_restricted_to_the_blob(session in arb_session()) {
        let blob = session.blob();
        let parsed = parse(&blob).unwrap();
        prop_assert_eq!(&parsed, &session.blob_config());
        // And travelling as a string literal changes nothing.
        prop_assert_eq!(parse(&parsed.to_json_string_literal()).unwrap(), parsed.clone());
        prop_assert_eq!(parsed.to_blob(), blob);
    }

    #[test]
    fn arbitrary_text_never_panics(input in "\\PC{0,200}") {
        let _ = parse(&input);
        let _ = parse_blob_or_body(&input);
    }

    #[test]
    fn mutated_documented_blob_never_panics(pos in 0usize..573, byte in any::<u8>()) {
        let mut bytes = DOCUMENTED.as_bytes().to_vec();
        let pos = pos % bytes.len();
        bytes[pos] = byte;
        if let Ok(text) = std::str::from_utf8(&bytes) {
            let _ = parse(text);
        }
    }
}
