//! The prompts the service has fetched, kept for the requests that name them again.
//!
//! A bot plays the same few prompts over and over, so the service keeps their audio rather
//! than fetch each on every request; but a long-running sim must not keep every prompt it ever
//! fetched. The cache holds at most [`MAX_CACHED_SAMPLES`] samples and [`MAX_CACHED_PROMPTS`]
//! prompts, dropping the least recently used when [`PromptCache::settle`] runs after each
//! request. A prompt that could not be fetched is remembered only for the request at hand: the
//! next request fetches it again, as the prompt's server may be back.

use std::collections::HashMap;
use std::sync::Arc;

use super::media_ops::PromptAudio;

/// Most audio kept: 20 minutes at 16 kHz (38 MB).
pub(super) const MAX_CACHED_SAMPLES: usize = 16_000 * 60 * 20;

/// Most prompts kept.
pub(super) const MAX_CACHED_PROMPTS: usize = 256;

/// Prompt audio by URI, as the shell fetched it.
#[derive(Debug, Default)]
pub(super) struct PromptCache {
    fetched: HashMap<String, Cached>,
    /// Why prompts of the request at hand could not be fetched.
    failed: HashMap<String, String>,
    samples: usize,
    /// Stamps uses, for least-recently-used order.
    clock: u64,
}

#[derive(Debug)]
struct Cached {
    audio: Arc<[i16]>,
    used: u64,
}

impl PromptCache {
    /// True when the audio of `uri` is at hand (not a failure: those are fetched again).
    pub(super) fn has(&self, uri: &str) -> bool {
        self.fetched.contains_key(uri)
    }

    /// Keeps what fetching `uri` gave.
    pub(super) fn insert(&mut self, uri: &str, audio: PromptAudio) {
        self.clock += 1;
        match audio {
            Ok(audio) => {
                self.failed.remove(uri);
                self.samples += audio.len();
                let old = self.fetched.insert(
                    uri.to_owned(),
                    Cached {
                        audio,
                        used: self.clock,
                    },
                );
                if let Some(old) = old {
                    self.samples -= old.audio.len();
                }
            }
            Err(why) => {
                if let Some(old) = self.fetched.remove(uri) {
                    self.samples -= old.audio.len();
                }
                self.failed.insert(uri.to_owned(), why);
            }
        }
    }

    /// The audio of `uri`, or why there is none; marks it used.
    pub(super) fn get(&mut self, uri: &str) -> Option<PromptAudio> {
        self.clock += 1;
        if let Some(c) = self.fetched.get_mut(uri) {
            c.used = self.clock;
            return Some(Ok(c.audio.clone()));
        }
        self.failed.get(uri).map(|why| Err(why.clone()))
    }

    /// After a request: forgets its failures and drops the least recently used prompts beyond
    /// the bounds.
    pub(super) fn settle(&mut self) {
        self.failed.clear();
        while self.samples > MAX_CACHED_SAMPLES || self.fetched.len() > MAX_CACHED_PROMPTS {
            let Some(oldest) = self
                .fetched
                .iter()
                .min_by_key(|(_, c)| c.used)
                .map(|(uri, _)| uri.clone())
            else {
                break;
            };
            if let Some(c) = self.fetched.remove(&oldest) {
                self.samples -= c.audio.len();
            }
        }
    }

    /// Prompts kept, and their samples.
    pub(super) fn size(&self) -> (usize, usize) {
        (self.fetched.len(), self.samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn audio(n: usize) -> PromptAudio {
        Ok(Arc::from(vec![1i16; n]))
    }

    #[test]
    fn the_least_recently_used_prompt_goes_first_when_full() {
        let mut c = PromptCache::default();
        let third = MAX_CACHED_SAMPLES / 3 + 1;
        c.insert("a", audio(third));
        c.insert("b", audio(third));
        assert!(c.get("a").is_some());
        c.insert("c", audio(third));
        c.settle();
        assert!(c.has("a") && c.has("c"), "a was used after b");
        assert!(!c.has("b"));
        assert_eq!(c.size(), (2, 2 * third));
    }

    #[test]
    fn failures_last_one_request_and_are_fetched_again() {
        let mut c = PromptCache::default();
        c.insert("a", audio(10));
        c.insert("a", Err("HTTP 404".into()));
        assert!(!c.has("a"), "a failed fetch replaces the audio");
        assert_eq!(c.get("a"), Some(Err("HTTP 404".into())));
        assert_eq!(c.size(), (0, 0));
        c.settle();
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn no_more_than_the_most_prompts_are_kept() {
        let mut c = PromptCache::default();
        for i in 0..MAX_CACHED_PROMPTS + 10 {
            c.insert(&format!("p{i}"), audio(1));
        }
        c.settle();
        assert_eq!(c.size(), (MAX_CACHED_PROMPTS, MAX_CACHED_PROMPTS));
        assert!(!c.has("p0") && c.has(&format!("p{}", MAX_CACHED_PROMPTS + 9)));
    }
}
