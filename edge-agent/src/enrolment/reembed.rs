//! `reembed`: after a real model change (a new embedding space), templates are made again from the
//! aligned crops kept at enrolment, so students need not stand in front of the camera again.
//! Students whose templates are all in another space and who have no kept crop are listed for
//! re-enrolment.

use serde::Serialize;

use super::{EnrolError, require_consent};
use crate::store::{NewTemplate, Store};
use crate::vision::{AlignedFace, Pipeline};

/// What one `reembed` run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Reembedded {
    /// The space templates were made in: this pipeline's.
    pub space: String,
    /// New templates, each `(student, from template, new template)`.
    pub made: Vec<(String, String, String)>,
    /// Crops already re-embedded into this space by an earlier run.
    pub already: usize,
    /// Crops that could not be used, each `(template, reason)`.
    pub skipped: Vec<(String, String)>,
    /// Students holding templates, none in this space even now: they must be enrolled again.
    pub need_reenrolment: Vec<String>,
}

/// Re-embeds every kept crop of a template outside the pipeline's space (once per crop and space),
/// each new template stored with its outbox event like an enrolment. The crop stays with the
/// template it was taken for, so a later space re-embeds from the same original.
pub fn reembed(pipeline: &mut Pipeline, store: &mut Store) -> Result<Reembedded, EnrolError> {
    let space = pipeline.space().to_string();
    let size = pipeline.embedder.input_size();
    let mut report = Reembedded {
        space: space.clone(),
        ..Reembedded::default()
    };
    for kept in store.crops_outside(&space)? {
        if store.reembedded_from(&kept.uuid, &space)? {
            report.already += 1;
            continue;
        }
        if let Err(e) = shared_proto::crop::check(kept.crop.len(), size) {
            report.skipped.push((kept.uuid, e.to_string()));
            continue;
        }
        if let Err(e) = require_consent(store, &kept.student_id) {
            report.skipped.push((kept.uuid, e.to_string()));
            continue;
        }
        let face = AlignedFace {
            size,
            rgb: kept.crop,
        };
        let embedding = pipeline.embed([&face])?.remove(0);
        let template = store.add_template(
            &NewTemplate {
                student_id: &kept.student_id,
                model_id: &embedding.model.to_string(),
                space: &space,
                vector: &embedding.vector,
                quality: kept.quality,
                source: &shared_proto::crop::reembed_source(&kept.uuid),
                crop: None,
            },
            "reembed",
        )?;
        report.made.push((kept.student_id, kept.uuid, template));
    }
    let holders = store.students_with_templates()?;
    report.need_reenrolment = store.template_spaces_of(&holders, &space)?.elsewhere_only;
    Ok(report)
}
