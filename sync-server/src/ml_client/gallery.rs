//! The gallery an `enrol-faces` call sends: the school's templates for the look-alike check. The
//! service keeps the gallery of each call under an id it answers with; while every template it
//! held is still live, the next call names it (`gallery_base`) and sends only the templates added
//! since. A removed template (consent withdrawn, an erasure, a re-enrolment) or a service that
//! lost the gallery (`GALLERY_UNKNOWN`) means the whole gallery once more.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use shared_proto::EmbeddingSpace;
use shared_proto::ml::service::{EnrolRequest, GalleryTemplate};
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
}

impl SentGalleries {
    /// Sets `request`'s gallery from `templates`, the school's in the request's space: those
    /// added since the gallery the service keeps, or all of them.
    pub fn fill(&self, school: &str, templates: &[Template], request: &mut EnrolRequest) {
        let by_school = self.by_school.lock().unwrap_or_else(|p| p.into_inner());
        let kept = by_school
            .get(school)
            .filter(|kept| kept.space == request.space);
        let (base, sent) = delta(kept, templates);
        request.gallery_base = base;
        request.gallery = sent.into_iter().map(gallery_template).collect();
    }

    /// The service answered a call whose gallery was `templates`: keeps `id` for the next.
    pub fn answered(
        &self,
        school: &str,
        space: &EmbeddingSpace,
        templates: &[Template],
        id: Option<String>,
    ) {
        let mut by_school = self.by_school.lock().unwrap_or_else(|p| p.into_inner());
        match id {
            Some(id) => {
                let kept = Kept {
                    id,
                    space: space.clone(),
                    templates: templates.iter().map(|t| t.id.clone()).collect(),
                };
                by_school.insert(school.to_owned(), kept);
            }
            // A service that keeps no galleries (an older one): every call sends all.
            None => {
                by_school.remove(school);
            }
        }
    }

    /// The service does not keep the school's gallery (any more).
    pub fn forget(&self, school: &str) {
        let mut by_school = self.by_school.lock().unwrap_or_else(|p| p.into_inner());
        by_school.remove(school);
    }
}

/// The kept gallery's id and the templates to send with it when it still holds only live
/// templates, else no id and every template.
fn delta<'t>(
    kept: Option<&Kept>,
    templates: &'t [Template],
) -> (Option<String>, Vec<&'t Template>) {
    if let Some(kept) = kept {
        let live: HashSet<&str> = templates.iter().map(|t| t.id.as_str()).collect();
        if kept.templates.iter().all(|id| live.contains(id.as_str())) {
            let added = templates
                .iter()
                .filter(|t| !kept.templates.contains(&t.id))
                .collect();
            return (Some(kept.id.clone()), added);
        }
    }
    (None, templates.iter().collect())
}

fn gallery_template(t: &Template) -> GalleryTemplate {
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

    fn request() -> EnrolRequest {
        EnrolRequest {
            photos: Vec::new(),
            space: space(),
            gallery_base: None,
            gallery: Vec::new(),
            force: false,
            keep_crops: false,
        }
    }

    fn sent(request: &EnrolRequest) -> Vec<&str> {
        request.gallery.iter().map(|t| t.student.as_str()).collect()
    }

    #[test]
    fn after_an_answer_only_the_templates_added_since_are_sent() {
        let galleries = SentGalleries::default();
        let first = [template("a"), template("b")];
        let mut asked = request();
        galleries.fill("north", &first, &mut asked);
        assert_eq!(asked.gallery_base, None);
        assert_eq!(sent(&asked), ["student-of-a", "student-of-b"]);

        galleries.answered("north", &space(), &first, Some("g1".to_owned()));
        let second = [template("a"), template("b"), template("c")];
        galleries.fill("north", &second, &mut asked);
        assert_eq!(asked.gallery_base.as_deref(), Some("g1"));
        assert_eq!(sent(&asked), ["student-of-c"]);

        // Another school has its own gallery.
        galleries.fill("south", &second, &mut asked);
        assert_eq!(asked.gallery_base, None);
        assert_eq!(sent(&asked).len(), 3);
    }

    #[test]
    fn a_removed_template_a_lost_gallery_or_another_space_sends_the_whole_gallery() {
        let galleries = SentGalleries::default();
        let held = [template("a"), template("b")];
        galleries.answered("north", &space(), &held, Some("g1".to_owned()));
        let mut asked = request();

        // b was deleted (consent withdrawn): the kept gallery would still hold it.
        galleries.fill("north", &[template("a"), template("c")], &mut asked);
        assert_eq!(asked.gallery_base, None);
        assert_eq!(sent(&asked), ["student-of-a", "student-of-c"]);

        asked.space = EmbeddingSpace::new("another-space").unwrap();
        galleries.fill("north", &held, &mut asked);
        assert_eq!(asked.gallery_base, None);

        asked.space = space();
        galleries.forget("north");
        galleries.fill("north", &held, &mut asked);
        assert_eq!(asked.gallery_base, None);
        assert_eq!(sent(&asked).len(), 2);

        // A service that answers no id keeps nothing.
        galleries.answered("north", &space(), &held, Some("g2".to_owned()));
        galleries.answered("north", &space(), &held, None);
        galleries.fill("north", &held, &mut asked);
        assert_eq!(asked.gallery_base, None);
    }
}
