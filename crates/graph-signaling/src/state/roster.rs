//! The participant roster of one call: full and delta roster updates, and which audio source
//! ids are bound to which participant.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use media_session::SourceId;

use crate::models::{DeltaParticipants, Participant};

/// How a roster entry is identified.
///
/// Participants are keyed by id. Roster entries with a `null` id (the invite examples have them)
/// are keyed by their identity and first audio source id, which is what tells them apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ParticipantKey {
    /// The participant's id.
    Id(String),
    /// Identity label (`user:…`) and first audio source id, for entries without an id.
    Anonymous {
        /// The identity label.
        identity: String,
        /// The first audio source id, if any.
        source: Option<SourceId>,
    },
}

impl ParticipantKey {
    /// The key of a roster entry.
    pub fn of(p: &Participant) -> ParticipantKey {
        match p.id.as_deref() {
            Some(id) => ParticipantKey::Id(id.to_owned()),
            None => ParticipantKey::Anonymous {
                identity: p.identity_label(),
                source: p.audio_sources().next(),
            },
        }
    }
}

impl fmt::Display for ParticipantKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParticipantKey::Id(id) => f.write_str(id),
            ParticipantKey::Anonymous {
                identity,
                source: Some(s),
            } => write!(f, "{identity}#{s}"),
            ParticipantKey::Anonymous {
                identity,
                source: None,
            } => f.write_str(identity),
        }
    }
}

/// What a roster update changed. Produced in order; binds follow the join that causes them and
/// unbinds precede the leave.
#[derive(Debug, Clone, PartialEq)]
pub enum RosterChange {
    /// A participant appeared.
    Joined(ParticipantKey),
    /// A participant's entry changed (lobby, mute, streams, info).
    Updated(ParticipantKey),
    /// A participant left, with the reason from `removedState` if any.
    Left(ParticipantKey, Option<String>),
    /// Audio with this source id now belongs to this participant.
    Bind(SourceId, ParticipantKey),
    /// Audio with this source id no longer belongs to this participant.
    Unbind(SourceId, ParticipantKey),
}

/// One participant as the roster knows it.
#[derive(Debug, Clone, PartialEq)]
pub struct RosterEntry {
    /// The latest roster entry received.
    pub participant: Participant,
    /// True for the bot's own entry (never bound as a receive stream).
    pub is_self: bool,
    /// The audio source ids bound to this participant.
    pub bound: BTreeSet<SourceId>,
    /// The latest roster sequence number applied to this entry.
    pub sequence: Option<i64>,
}

/// Keys the entries of one update; when several entries share a key, only the last counts, so
/// applying the same update twice changes nothing the second time.
fn last_per_key<'a>(
    entries: impl Iterator<Item = &'a Participant>,
) -> Vec<(ParticipantKey, &'a Participant)> {
    let keyed: Vec<(ParticipantKey, &Participant)> =
        entries.map(|p| (ParticipantKey::of(p), p)).collect();
    let mut last: HashMap<&ParticipantKey, usize> = HashMap::with_capacity(keyed.len());
    for (i, (k, _)) in keyed.iter().enumerate() {
        last.insert(k, i);
    }
    if last.len() == keyed.len() {
        return keyed;
    }
    let keep: Vec<bool> = (0..keyed.len())
        .map(|i| last.get(&keyed[i].0) == Some(&i))
        .collect();
    keyed
        .into_iter()
        .zip(keep)
        .filter_map(|(e, k)| k.then_some(e))
        .collect()
}

/// How the roster recognises the bot's own entry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SelfIdentity {
    /// `myParticipantId` of the call.
    pub participant_id: Option<String>,
    /// The bot's application (client) id.
    pub app_id: Option<String>,
}

impl SelfIdentity {
    fn matches(&self, p: &Participant) -> bool {
        if let (Some(mine), Some(id)) = (&self.participant_id, p.id.as_deref())
            && mine == id
        {
            return true;
        }
        let Some(app) = &self.app_id else {
            return false;
        };
        p.info
            .get()
            .and_then(|i| i.identity.get())
            .filter(|set| set.user.get().is_none())
            .and_then(|set| set.application.get())
            .and_then(|a| a.id.as_deref())
            .is_some_and(|id| id.eq_ignore_ascii_case(app))
    }
}

/// The roster of one call.
#[derive(Debug, Clone, Default)]
pub struct Roster {
    entries: HashMap<ParticipantKey, RosterEntry>,
    /// Sequence numbers of participants that left, so a late, older delta cannot revive them.
    departed: HashMap<ParticipantKey, i64>,
    /// Which participant each bound source belongs to.
    sources: HashMap<SourceId, ParticipantKey>,
    last_sequence: Option<i64>,
    me: SelfIdentity,
}

impl Roster {
    /// An empty roster that recognises the bot by `me`.
    pub fn new(me: SelfIdentity) -> Self {
        Roster {
            me,
            ..Roster::default()
        }
    }

    /// Updates how the bot's own entry is recognised (e.g. once `myParticipantId` is known).
    pub fn set_self(&mut self, me: SelfIdentity) {
        self.me = me;
    }

    /// Number of participants.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nobody is in the roster.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// A participant's entry.
    pub fn get(&self, key: &ParticipantKey) -> Option<&RosterEntry> {
        self.entries.get(key)
    }

    /// Every participant.
    pub fn entries(&self) -> impl Iterator<Item = (&ParticipantKey, &RosterEntry)> {
        self.entries.iter()
    }

    /// The participant an audio source id is bound to.
    pub fn source_owner(&self, source: SourceId) -> Option<&ParticipantKey> {
        self.sources.get(&source)
    }

    /// Number of bound audio sources.
    pub fn bound_sources(&self) -> usize {
        self.sources.len()
    }

    /// The highest delta `sequenceNumber` applied.
    pub fn last_sequence(&self) -> Option<i64> {
        self.last_sequence
    }

    /// Applies a full roster: everyone listed is present, everyone else has left.
    pub fn apply_full(&mut self, participants: &[&Participant], out: &mut Vec<RosterChange>) {
        let keyed = last_per_key(participants.iter().copied());
        let mut present = std::collections::HashSet::with_capacity(keyed.len());
        for (key, p) in keyed {
            present.insert(key.clone());
            self.upsert(key, p, p.roster_sequence_number.get().copied(), out);
        }
        let gone: Vec<ParticipantKey> = self
            .entries
            .keys()
            .filter(|k| !present.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.remove(&key, None, out);
        }
    }

    /// Applies a delta roster. Entries older than what is known for a participant are ignored,
    /// so deltas may arrive in any order.
    pub fn apply_delta(&mut self, delta: &DeltaParticipants, out: &mut Vec<RosterChange>) {
        let batch_seq = delta.sequence_number.get().copied();
        for (key, p) in last_per_key(delta.participants.iter()) {
            let seq = p.roster_sequence_number.get().copied().or(batch_seq);
            if let Some(seq) = seq {
                let known = self
                    .entries
                    .get(&key)
                    .and_then(|e| e.sequence)
                    .or_else(|| self.departed.get(&key).copied());
                if known.is_some_and(|k| k >= seq) {
                    continue;
                }
            }
            if p.removed_state.get().is_some() {
                let reason = p
                    .removed_state
                    .get()
                    .and_then(|r| r.reason.as_deref().map(str::to_owned));
                self.remove(&key, reason, out);
                if let Some(seq) = seq {
                    let d = self.departed.entry(key).or_insert(seq);
                    *d = (*d).max(seq);
                }
            } else {
                self.upsert(key, p, seq, out);
            }
        }
        if let Some(s) = batch_seq {
            self.last_sequence = Some(self.last_sequence.map_or(s, |l| l.max(s)));
        }
    }

    /// Removes everyone (the call ended), unbinding every source.
    pub fn clear(&mut self, out: &mut Vec<RosterChange>) {
        let keys: Vec<ParticipantKey> = self.entries.keys().cloned().collect();
        for key in keys {
            self.remove(&key, None, out);
        }
    }

    fn upsert(
        &mut self,
        key: ParticipantKey,
        p: &Participant,
        seq: Option<i64>,
        out: &mut Vec<RosterChange>,
    ) {
        let is_self = self.me.matches(p);
        let wanted: BTreeSet<SourceId> = if is_self {
            BTreeSet::new()
        } else {
            p.audio_sources().collect()
        };
        self.departed.remove(&key);
        let (previous, joined) = match self.entries.get_mut(&key) {
            Some(entry) => {
                if entry.participant == *p && entry.is_self == is_self {
                    entry.sequence = seq.or(entry.sequence);
                    return;
                }
                entry.participant = p.clone();
                entry.is_self = is_self;
                entry.sequence = seq.or(entry.sequence);
                (std::mem::take(&mut entry.bound), false)
            }
            None => {
                self.entries.insert(
                    key.clone(),
                    RosterEntry {
                        participant: p.clone(),
                        is_self,
                        bound: BTreeSet::new(),
                        sequence: seq,
                    },
                );
                (BTreeSet::new(), true)
            }
        };
        out.push(if joined {
            RosterChange::Joined(key.clone())
        } else {
            RosterChange::Updated(key.clone())
        });
        for s in previous.difference(&wanted) {
            self.sources.remove(s);
            out.push(RosterChange::Unbind(*s, key.clone()));
        }
        let mut bound = previous
            .intersection(&wanted)
            .copied()
            .collect::<BTreeSet<_>>();
        for s in wanted.difference(&previous) {
            // A source id moves to its newest owner; the old owner loses it first.
            if let Some(old) = self.sources.insert(*s, key.clone())
                && old != key
            {
                if let Some(e) = self.entries.get_mut(&old) {
                    e.bound.remove(s);
                }
                out.push(RosterChange::Unbind(*s, old));
            }
            out.push(RosterChange::Bind(*s, key.clone()));
            bound.insert(*s);
        }
        if let Some(e) = self.entries.get_mut(&key) {
            e.bound = bound;
        }
    }

    fn remove(
        &mut self,
        key: &ParticipantKey,
        reason: Option<String>,
        out: &mut Vec<RosterChange>,
    ) {
        let Some(entry) = self.entries.remove(key) else {
            return;
        };
        // Remember how far this participant's updates went, so an older delta arriving late
        // cannot bring them back.
        if let Some(seq) = entry.sequence {
            let d = self.departed.entry(key.clone()).or_insert(seq);
            *d = (*d).max(seq);
        }
        for s in entry.bound {
            if self.sources.get(&s) == Some(key) {
                self.sources.remove(&s);
            }
            out.push(RosterChange::Unbind(s, key.clone()));
        }
        out.push(RosterChange::Left(key.clone(), reason));
    }
}
