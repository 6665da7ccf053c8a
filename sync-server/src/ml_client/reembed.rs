//! Re-embedding after a model change: the crops a school keeps (`SchoolSettings::keep_crops`)
//! are embedded again by the ML service's model, and each becomes a template in the service's
//! space, stored like a central enrolment's (`template_added` of the school's central device), so
//! boxes updated to the new model recognise the students without new photos. The rules are the
//! box's (`shared_proto::crop`): one new template per crop and space, naming its origin; the crop
//! stays with the template it was taken for.

use std::collections::{BTreeSet, HashSet};

use serde::Serialize;
use shared_proto::EmbeddingSpace;
use shared_proto::crop::{CROP_SIZE, reembed_source};
use shared_proto::ml::service::{self as wire, EmbedCropsRequest};
use shared_proto::sync::Embedding;

use super::enrol::{central_device, consent_words, template_added};
use super::{Enroller, MlError};
use crate::domain::audit::{Action, Entry};
use crate::domain::consent::allows_templates;
use crate::domain::event::{Event, Template};
use crate::store::{CropRead, KeptCrop, Store, StoreError, TemplateRead};

/// What one re-embedding did.
#[derive(Clone, Debug, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Reembedded {
    /// The service's space: the new templates'.
    #[schema(value_type = String)]
    pub space: EmbeddingSpace,
    /// New templates made from kept crops.
    pub made: usize,
    /// Crops of templates already in the service's space, or re-embedded into it before.
    pub already: usize,
    /// Crops that could not be used: (template, reason).
    pub skipped: Vec<(String, String)>,
    /// Students holding templates, none in the service's space even now: they need new photos.
    pub need_photos: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ReembedError {
    #[error("the ML service: {0}")]
    Service(#[from] MlError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Whether the school keeps crops (its setting) and how many it holds: what the Enrolment page
/// and the API's overview show.
pub async fn kept_crops(store: &dyn Store, school: &str) -> Result<(bool, usize), StoreError> {
    let keep = store.school_settings(school).await?.keep_crops;
    Ok((
        keep,
        store.kept_crops(school, CropRead::Listed).await?.len(),
    ))
}

impl Enroller {
    /// Re-embeds every kept crop of `school` whose template is outside the service's space and
    /// was not re-embedded into it before; `actor` is written in the audit log.
    pub async fn reembed(&self, school: &str, actor: &str) -> Result<Reembedded, ReembedError> {
        // The service may have been restarted with the new model since its status was read.
        self.client.forget_status();
        let status = self.client.status().await?;
        let space = status.space.clone();
        let templates = self
            .store
            .templates_of(school, TemplateRead::School)
            .await?;
        let crops = self.store.kept_crops(school, CropRead::Listed).await?;
        let mut report = Reembedded {
            space: space.clone(),
            made: 0,
            already: 0,
            skipped: Vec::new(),
            need_photos: Vec::new(),
        };
        let todo = self
            .to_reembed(school, &space, &templates, crops, &mut report)
            .await?;
        let now = self.clock.now();
        for chosen in todo.chunks(wire::MAX_EMBED_CROPS) {
            let batch = self.bytes_of(school, chosen, &mut report).await?;
            if batch.is_empty() {
                continue;
            }
            let request = EmbedCropsRequest {
                size: CROP_SIZE,
                crops: batch
                    .iter()
                    .map(|c| {
                        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, &c.crop)
                    })
                    .collect(),
            };
            let answer = self.client.embed_crops(&request).await?;
            if answer.embeddings.len() != batch.len() || answer.space != space {
                return Err(MlError::Garbled(format!(
                    "{} vectors in {} for {} crops in {space}",
                    answer.embeddings.len(),
                    answer.space,
                    batch.len()
                ))
                .into());
            }
            let events: Vec<Event> = batch
                .iter()
                .zip(answer.embeddings)
                .map(|(kept, vector)| {
                    let embedding = Embedding {
                        model: answer.model.clone(),
                        space: space.clone(),
                        vector,
                    };
                    template_added(
                        ids_of(&kept.template, &space),
                        kept.student.clone(),
                        embedding,
                        kept.quality,
                        reembed_source(&kept.template),
                        now,
                    )
                })
                .collect();
            let outcome = self
                .store
                .apply_events(&central_device(school), &events, now)
                .await?;
            for (kept, event) in batch.iter().zip(&events) {
                match outcome.refused.iter().find(|r| r.id == event.id) {
                    None => report.made += 1,
                    Some(refused) => report
                        .skipped
                        .push((kept.template.clone(), refused.reason.clone())),
                }
            }
        }
        // Who still holds no template in the space: new photos are the only way.
        let in_space: HashSet<&str> = templates
            .iter()
            .filter(|t| t.embedding.space == space)
            .map(|t| t.student.as_str())
            .collect();
        let skipped: HashSet<&str> = report.skipped.iter().map(|(t, _)| t.as_str()).collect();
        let given: HashSet<&str> = todo
            .iter()
            .filter(|c| !skipped.contains(c.template.as_str()))
            .map(|c| c.student.as_str())
            .collect();
        let holders: BTreeSet<&str> = templates.iter().map(|t| t.student.as_str()).collect();
        report.need_photos = holders
            .into_iter()
            .filter(|s| !in_space.contains(s) && !given.contains(s))
            .map(str::to_owned)
            .collect();
        let entry = Entry {
            school_id: Some(school.to_owned()),
            at: now,
            actor: actor.to_owned(),
            action: Action::TemplatesReembedded,
            subject: space.to_string(),
            detail: format!(
                "{} templates made from kept crops, {} already in {space}, {} skipped, {} students need new photos",
                report.made,
                report.already,
                report.skipped.len(),
                report.need_photos.len()
            ),
        };
        self.store.append_audit(&entry).await?;
        tracing::info!(school, detail = %entry.detail, "kept crops re-embedded");
        Ok(report)
    }

    /// The kept crops to embed into `space`: outside it, not re-embedded into it before, of a
    /// student who consents; the others are counted or skipped with why.
    async fn to_reembed(
        &self,
        school: &str,
        space: &EmbeddingSpace,
        templates: &[Template],
        crops: Vec<KeptCrop>,
        report: &mut Reembedded,
    ) -> Result<Vec<KeptCrop>, StoreError> {
        let done: HashSet<&str> = templates
            .iter()
            .filter(|t| t.embedding.space == *space)
            .map(|t| t.source.as_str())
            .collect();
        let mut todo = Vec::new();
        for kept in crops {
            if kept.space == *space || done.contains(reembed_source(&kept.template).as_str()) {
                report.already += 1;
                continue;
            }
            match self.store.student(school, &kept.student).await? {
                Some(s) if s.active && allows_templates(s.consent) => todo.push(kept),
                Some(s) if s.active => report.skipped.push((
                    kept.template,
                    format!("consent {}", consent_words(s.consent)),
                )),
                _ => report
                    .skipped
                    .push((kept.template, "the student left the roster".into())),
            }
        }
        Ok(todo)
    }

    /// One batch of `chosen` crops with their bytes (read a batch at a time, so a school's crops
    /// are never all in memory), those of the embedder's size; the others are skipped with why.
    async fn bytes_of(
        &self,
        school: &str,
        chosen: &[KeptCrop],
        report: &mut Reembedded,
    ) -> Result<Vec<KeptCrop>, StoreError> {
        let ids: Vec<String> = chosen.iter().map(|c| c.template.clone()).collect();
        let mut read = self.store.kept_crops(school, CropRead::Bytes(&ids)).await?;
        let mut batch = Vec::with_capacity(chosen.len());
        for kept in chosen {
            // Deleted since it was listed: with its template, or the setting switched off.
            let Some(at) = read.iter().position(|c| c.template == kept.template) else {
                let why = "the crop is no longer kept".to_owned();
                report.skipped.push((kept.template.clone(), why));
                continue;
            };
            let crop = read.swap_remove(at);
            match shared_proto::crop::check(crop.crop.len(), CROP_SIZE) {
                Ok(()) => batch.push(crop),
                Err(e) => report.skipped.push((crop.template, e.to_string())),
            }
        }
        Ok(batch)
    }
}

/// The event id and template id of `template`'s crop re-embedded into `space`: UUIDs (what the
/// push rules take), the template's own with the space's hash mixed into its random bits, so a
/// second run makes events already applied, never a second template.
fn ids_of(template: &str, space: &EmbeddingSpace) -> (String, String) {
    let base = uuid::Uuid::parse_str(template).map_or(0, |u| u.as_u128());
    // FNV-1a over the space's name, kept to 40 bits so both ids stay within the random bits.
    let hash = space
        .as_str()
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
    let mix = u128::from(hash & 0xff_ffff_ffff) | 1;
    (
        uuid::Uuid::from_u128(base ^ mix).to_string(),
        uuid::Uuid::from_u128(base ^ (mix << 20)).to_string(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crops_new_ids_are_the_same_every_time_and_differ_by_space() {
        let template = "01890a5d-ac96-774b-bcce-b302099a8057";
        let v2 = EmbeddingSpace::new("fr_feature-v2").unwrap();
        let v3 = EmbeddingSpace::new("fr_feature-v3").unwrap();
        let (event, id) = ids_of(template, &v2);
        assert_eq!((event.clone(), id.clone()), ids_of(template, &v2));
        assert_ne!(ids_of(template, &v3), (event.clone(), id.clone()));
        for made in [&event, &id] {
            let parsed = uuid::Uuid::parse_str(made).unwrap();
            assert_eq!(parsed.get_version_num(), 7, "{made}");
            assert_ne!(made, template);
        }
        assert_ne!(event, id);
    }
}
