//! The gallery an `enrol-faces` call sends: the school's templates for the look-alike check. The
//! service keeps the gallery of each call under an id it answers with; while every template it
//! held is still live, the next call names it (`gallery_base`) and sends only the templates added
//! since. A removed template (consent withdrawn, an erasure, a re-enrolment) or a service that
//! lost the gallery (`GALLERY_UNKNOWN`) means the whole gallery once more.
//!
//! Which templates are live is read from the store on every call, as ids only
//! (`Store::live_template_ids`); vectors are read only for the templates a call sends.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use shared_proto::EmbeddingSpace;
use shared_proto::ml::service::GalleryTemplate;
use shared_proto::sync::f32le_encode;

use crate::domain::event::Template;

/// What the service keeps of a school's gallery, as far as this server knows.
struct Kept {
    id: String,
    space: EmbeddingSpace,
    /// The templates it holds, by id.
    templates: HashSet<String>,
}

/// The last gallery kept for each school.
#[derive(Default)]
pub(super) struct SentGalleries {
    by_school: Mutex<HashMap<String, Kept>>,
    /// The service's last answer named no gallery: it keeps none (`[serve] kept_galleries = 0`,
    /// or an older service), and would let a gallery sent in parts go at once. An answer with an
    /// id clears it, so a service restarted with galleries is used from its first answer on.
    keeps_none: AtomicBool,
}

/// What one call sends: a kept gallery and the live templates it lacks, or (no `base`) the
/// whole gallery.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct Delta {
    /// The kept gallery to name.
    pub base: Option<String>,
    /// With a base, the ids of the templates to send with it; unused without one.
    pub added: Vec<String>,
    /// The templates the base holds.
    held: HashSet<String>,
}

impl Delta {
    /// The service answered `id` to a call that sent `part` on this delta's base: the delta now
    /// names that gallery, which holds `part` too.
    pub fn grow(&mut self, id: String, part: &[Template]) {
        self.base = Some(id);
        self.added.clear();
        self.held.extend(part.iter().map(|t| t.id.clone()));
    }
}

impl SentGalleries {
    /// What a call in `space` sends, `live` being the ids of the school's live templates in it.
    pub fn delta(&self, school: &str, space: &EmbeddingSpace, live: &[String]) -> Delta {
        let by_school = self.by_school.lock().unwrap_or_else(|p| p.into_inner());
        let kept = by_school.get(school).filter(|kept| &kept.space == space);
        if let Some(kept) = kept {
            let alive: HashSet<&str> = live.iter().map(String::as_str).collect();
            if kept.templates.iter().all(|id| alive.contains(id.as_str())) {
                return Delta {
                    base: Some(kept.id.clone()),
                    added: live
                        .iter()
                        .filter(|id| !kept.templates.contains(*id))
                        .cloned()
                        .collect(),
                    held: kept.templates.clone(),
                };
            }
        }
        Delta {
            base: None,
            added: Vec::new(),
            held: HashSet::new(),
        }
    }

    /// The service answered a call of `delta` that sent `sent`: keeps `id` for the next.
    pub fn answered(
        &self,
        school: &str,
        space: &EmbeddingSpace,
        delta: Delta,
        sent: &[Template],
        id: Option<String>,
    ) {
        let mut by_school = self.by_school.lock().unwrap_or_else(|p| p.into_inner());
        self.keeps_none.store(id.is_none(), Ordering::Relaxed);
        match id {
            Some(id) => {
                let mut templates = delta.held;
                templates.extend(sent.iter().map(|t| t.id.clone()));
                let kept = Kept {
                    id,
                    space: space.clone(),
                    templates,
                };
                by_school.insert(school.to_owned(), kept);
            }
            // A service that keeps no galleries (an older one): every call sends all.
            None => {
                by_school.remove(school);
            }
        }
    }

    /// Whether the service's last answer said it keeps no galleries.
    pub fn keeps_none(&self) -> bool {
        self.keeps_none.load(Ordering::Relaxed)
    }

    /// The service does not keep the school's gallery (any more).
    pub fn forget(&self, school: &str) {
        let mut by_school = self.by_school.lock().unwrap_or_else(|p| p.into_inner());
        by_school.remove(school);
    }
}

pub(super) fn gallery_template(t: &Template) -> GalleryTemplate {
    GalleryTemplate {
        student: t.student.clone(),
        embedding: Vec::new(),
        f32le: Some(f32le_encode(&t.embedding.vector)),
    }
}

#[cfg(test)]
mod tests {
    use shared_proto::sync::Embedding;

    use super::*;

    fn space() -> EmbeddingSpace {
        EmbeddingSpace::new("test-space").unwrap()
    }

    fn template(id: &str) -> Template {
        Template {
            id: id.to_owned(),
            student: format!("student-of-{id}"),
            embedding: Embedding {
                model: "test-model@0123456789ab".parse().unwrap(),
                space: space(),
                vector: vec![1.0, 0.0],
            },
            quality: 0.9,
            source: "central".to_owned(),
            created_at: 0,
        }
    }

    fn ids(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| (*id).to_owned()).collect()
    }

    fn templates(ids: &[&str]) -> Vec<Template> {
        ids.iter().map(|id| template(id)).collect()
    }

    #[test]
    fn after_an_answer_only_the_templates_added_since_are_sent() {
        let galleries = SentGalleries::default();
        let first = galleries.delta("north", &space(), &ids(&["a", "b"]));
        assert_eq!(first.base, None);

        galleries.answered(
            "north",
            &space(),
            first,
            &templates(&["a", "b"]),
            Some("g1".into()),
        );
        let second = galleries.delta("north", &space(), &ids(&["a", "b", "c"]));
        assert_eq!(second.base.as_deref(), Some("g1"));
        assert_eq!(second.added, ["c"]);

        // The next call builds on what the second one left: a, b and c.
        galleries.answered(
            "north",
            &space(),
            second,
            &templates(&["c"]),
            Some("g2".into()),
        );
        let third = galleries.delta("north", &space(), &ids(&["a", "b", "c", "d"]));
        assert_eq!(third.base.as_deref(), Some("g2"));
        assert_eq!(third.added, ["d"]);

        // Another school has its own gallery.
        assert_eq!(galleries.delta("south", &space(), &ids(&["a"])).base, None);
    }

    #[test]
    fn a_gallery_built_in_parts_is_named_and_holds_every_part() {
        let galleries = SentGalleries::default();
        let mut delta = galleries.delta("north", &space(), &ids(&["a", "b", "c"]));
        assert_eq!(delta.base, None);
        // The service kept two parts of the whole gallery: a, then b.
        delta.grow("p1".into(), &templates(&["a"]));
        delta.grow("p2".into(), &templates(&["b"]));
        assert_eq!(delta.base.as_deref(), Some("p2"));
        // The call with the photos sent c on p2.
        galleries.answered(
            "north",
            &space(),
            delta,
            &templates(&["c"]),
            Some("g".into()),
        );
        let next = galleries.delta("north", &space(), &ids(&["a", "b", "c", "d"]));
        assert_eq!(next.base.as_deref(), Some("g"));
        assert_eq!(next.added, ["d"]);
    }

    #[test]
    fn a_removed_template_a_lost_gallery_or_another_space_sends_the_whole_gallery() {
        let galleries = SentGalleries::default();
        let held = ids(&["a", "b"]);
        let kept = |galleries: &SentGalleries, id: &str| {
            let whole = galleries.delta("north", &space(), &held);
            galleries.answered(
                "north",
                &space(),
                whole,
                &templates(&["a", "b"]),
                Some(id.into()),
            );
        };
        kept(&galleries, "g1");

        // b was deleted (consent withdrawn): the kept gallery would still hold it.
        let delta = galleries.delta("north", &space(), &ids(&["a", "c"]));
        assert_eq!(delta.base, None);

        let another = EmbeddingSpace::new("another-space").unwrap();
        assert_eq!(galleries.delta("north", &another, &held).base, None);

        galleries.forget("north");
        assert_eq!(galleries.delta("north", &space(), &held).base, None);

        // A service that answers no id keeps nothing, until an answer names one again.
        kept(&galleries, "g2");
        assert!(!galleries.keeps_none());
        let delta = galleries.delta("north", &space(), &held);
        assert_eq!(delta.base.as_deref(), Some("g2"));
        galleries.answered("north", &space(), delta, &[], None);
        assert!(galleries.keeps_none());
        assert_eq!(galleries.delta("north", &space(), &held).base, None);
        kept(&galleries, "g3");
        assert!(!galleries.keeps_none());
    }
}
