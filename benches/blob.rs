//! Cost of writing and reading the appHostedMediaConfig blob.

use criterion::{Criterion, criterion_group, criterion_main};
use media_session::{
    AudioSocketSettings, MediaSession, MpUri, VbssSocketSettings, VideoSocketSettings,
};
use std::hint::black_box;

const DOCUMENTED: &str = include_str!("../crates/media-session/testdata/documented-blob.json");
const CALL_BODY: &str =
    include_str!("../crates/media-session/testdata/create-call-p2p-app-hosted.json");

fn blob(c: &mut Criterion) {
    let audio_only = MediaSession::builder(MpUri::new("bot.example.com", 18732).unwrap())
        .audio(AudioSocketSettings::default())
        .build()
        .unwrap();
    let full = (0..10)
        .fold(
            MediaSession::builder(MpUri::new("bot.example.com", 18732).unwrap()),
            |b, _| b.add_video(VideoSocketSettings::default()),
        )
        .vbss(VbssSocketSettings::default())
        .build()
        .unwrap();
    let full_blob = full.blob();

    let mut group = c.benchmark_group("blob");
    group.bench_function("serialize/audio_only", |b| {
        b.iter(|| black_box(&audio_only).blob())
    });
    group.bench_function("serialize/10_video_plus_vbss", |b| {
        b.iter(|| black_box(&full).blob())
    });
    group.bench_function("parse/documented", |b| {
        b.iter(|| media_session::parse(black_box(DOCUMENTED)).unwrap())
    });
    group.bench_function("parse/10_video_plus_vbss", |b| {
        b.iter(|| media_session::parse(black_box(&full_blob)).unwrap())
    });
    group.bench_function("parse/from_create_call_body", |b| {
        b.iter(|| media_session::parse_blob_or_body(black_box(CALL_BODY)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, blob);
criterion_main!(benches);
