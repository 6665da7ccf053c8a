//! Galleries sent with `enrol-faces`, kept a while under an id, so that the next call of a bulk
//! enrolment names the gallery (`gallery_base`) and sends only the templates added since. A school
//! of 2,000 students with three templates each would otherwise send ~16 MB of JSON with every
//! call of 8 photos, and the service would decode it on an inference thread each time.
//!
//! A kept gallery is never changed: a call that adds templates keeps a new one, and a call that
//! adds none is answered with the id it named. The least recently used are let go first; a
//! caller naming one that is gone is told to send the whole gallery again.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use shared_proto::EmbeddingSpace;

/// One template as the service compares it: the student, and the L2-normalised vector.
pub(crate) type Template = (String, Vec<f32>);

/// A gallery, in the chunks it was sent in. One built on a kept gallery shares that one's chunks,
/// so keeping it copies nothing: copying 6,000 templates on every call of a bulk enrolment was
/// ~12 MB and 12,000 allocations a call.
#[derive(Clone, Default)]
pub(crate) struct Templates {
    chunks: Vec<Arc<Vec<Template>>>,
}

impl Templates {
    pub fn new(sent: Vec<Template>) -> Templates {
        Templates::default().and(sent)
    }

    /// This gallery with `added` after it.
    pub fn and(&self, added: Vec<Template>) -> Templates {
        let mut chunks = self.chunks.clone();
        if !added.is_empty() {
            chunks.push(Arc::new(added));
        }
        Templates { chunks }
    }

    pub fn len(&self) -> usize {
        self.chunks.iter().map(|c| c.len()).sum()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Template> {
        self.chunks.iter().flat_map(|c| c.iter())
    }
}

/// Templates kept at most, all galleries together: 60,000 x 512 dimensions x 4 bytes is 120 MB.
/// The newest gallery is kept whatever its size (it is in memory for its call anyway).
const KEPT_TEMPLATES: usize = 60_000;

pub(crate) struct Galleries {
    /// Galleries kept at most (`[serve] kept_galleries`): a bulk enrolment needs one; a few let
    /// several schools enrol at once.
    capacity: usize,
    /// Least recently used first.
    kept: Mutex<VecDeque<Kept>>,
}

struct Kept {
    id: String,
    space: EmbeddingSpace,
    templates: Templates,
}

impl Galleries {
    pub fn new(capacity: usize) -> Galleries {
        Galleries {
            capacity,
            kept: Mutex::new(VecDeque::new()),
        }
    }

    /// The gallery kept as `id`, if it is still kept and in `space`.
    pub fn get(&self, id: &str, space: &EmbeddingSpace) -> Option<Templates> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        let at = kept.iter().position(|k| k.id == id && &k.space == space)?;
        let found = kept.remove(at)?;
        let templates = found.templates.clone();
        kept.push_back(found);
        Some(templates)
    }

    /// Keeps `templates` (in `space`) and answers the id to name them by; `None` when this
    /// service keeps no galleries.
    pub fn keep(&self, space: EmbeddingSpace, templates: Templates) -> Option<String> {
        if self.capacity == 0 {
            return None;
        }
        let id = uuid::Uuid::now_v7().to_string();
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        kept.push_back(Kept {
            id: id.clone(),
            space,
            templates,
        });
        while kept.len() > self.capacity || (kept.len() > 1 && held(&kept) > KEPT_TEMPLATES) {
            kept.pop_front();
        }
        Some(id)
    }
}

/// Templates in memory for `kept`: a chunk that galleries share counts once.
fn held(kept: &VecDeque<Kept>) -> usize {
    let mut seen = HashSet::new();
    kept.iter()
        .flat_map(|k| &k.templates.chunks)
        .filter(|chunk| seen.insert(Arc::as_ptr(chunk)))
        .map(|chunk| chunk.len())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEPT: usize = 4;

    fn space() -> EmbeddingSpace {
        EmbeddingSpace::new("test-space").unwrap()
    }

    fn of(n: usize) -> Templates {
        Templates::new(vec![("s".to_owned(), vec![1.0]); n])
    }

    #[test]
    fn a_kept_gallery_is_found_by_its_id_and_space_only() {
        let galleries = Galleries::new(KEPT);
        let id = galleries.keep(space(), of(3)).unwrap();
        assert_eq!(galleries.get(&id, &space()).map(|t| t.len()), Some(3));
        let other = EmbeddingSpace::new("another-space").unwrap();
        assert!(galleries.get(&id, &other).is_none());
        assert!(galleries.get("no-such-gallery", &space()).is_none());
    }

    #[test]
    fn the_least_recently_used_gallery_goes_first() {
        let galleries = Galleries::new(KEPT);
        let ids: Vec<String> = (0..KEPT)
            .map(|_| galleries.keep(space(), of(1)).unwrap())
            .collect();
        // Using the oldest makes the second oldest the one to go.
        assert!(galleries.get(&ids[0], &space()).is_some());
        galleries.keep(space(), of(1));
        assert!(galleries.get(&ids[0], &space()).is_some());
        assert!(galleries.get(&ids[1], &space()).is_none());
        assert!(galleries.get(&ids[2], &space()).is_some());
    }

    #[test]
    fn templates_beyond_the_budget_let_older_galleries_go_but_never_the_newest() {
        let galleries = Galleries::new(KEPT);
        let small = galleries.keep(space(), of(10)).unwrap();
        let big = galleries.keep(space(), of(KEPT_TEMPLATES)).unwrap();
        assert!(galleries.get(&small, &space()).is_none());
        assert!(galleries.get(&big, &space()).is_some());
    }

    #[test]
    fn a_gallery_built_on_a_kept_one_shares_its_templates() {
        let galleries = Galleries::new(KEPT);
        let base = of(KEPT_TEMPLATES / 2 + 1);
        let first = galleries.keep(space(), base.clone()).unwrap();
        let grown = base.and(vec![("t".to_owned(), vec![1.0])]);
        assert_eq!(grown.len(), KEPT_TEMPLATES / 2 + 2);
        assert_eq!(grown.iter().last().map(|t| t.0.as_str()), Some("t"));
        assert!(Arc::ptr_eq(&base.chunks[0], &grown.chunks[0]));
        // Both together hold fewer than the budget: the shared templates count once.
        let second = galleries.keep(space(), grown).unwrap();
        assert!(galleries.get(&first, &space()).is_some());
        assert!(galleries.get(&second, &space()).is_some());
    }

    #[test]
    fn a_service_set_to_keep_none_answers_no_id() {
        assert_eq!(Galleries::new(0).keep(space(), of(1)), None);
    }
}
