//! What a burst shows about a section's students, as data: each frame's evidence (faces matched
//! one-to-one to the section's students, the rest looked up school-wide), fused over the burst
//! (`fuse`), and the machine's mark per student (`decide`). No models and no store here: `capture`
//! gathers each frame's evidence with them, so the rules can be tested on numbers alone.

use std::collections::{BTreeMap, BTreeSet};

use super::capture::{ReviewItem, Scored};
use super::{Thresholds, Verdict, assign};
use crate::store::{Candidates, Mark, MarkSource, MarkStatus};

/// How many of a face's best students a review item shows.
const REVIEW_CANDIDATES: usize = 3;

/// A face of one frame matched to a student of the section.
#[derive(Clone, Debug, PartialEq)]
pub struct FaceMatch {
    pub student: String,
    pub score: f32,
    /// The face's best students of the section, best first: what a teacher sees if it needs review.
    pub candidates: Vec<Scored>,
}

/// A face that matched nobody of the section, as the school-wide lookup found it.
#[derive(Clone, Debug, PartialEq)]
pub struct Unmatched {
    /// The school's most similar student; `None` when the school holds no template at all.
    pub nearest: Option<String>,
    pub score: f32,
}

/// Everything one frame says: its matched faces, its other large faces, and how many faces were
/// too small to match.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FrameEvidence {
    pub matches: Vec<FaceMatch>,
    pub unmatched: Vec<Unmatched>,
    pub too_small: usize,
}

/// Matches a frame's faces to the section's students: `similarity[face_idx][student_idx]`
/// against `enrolled`, one-to-one, at or above `review`. Returns the matches and the indices of
/// the faces left over, for the school-wide lookup.
pub fn match_faces(
    enrolled: &[String],
    similarity: &[Vec<f32>],
    thresholds: Thresholds,
) -> (Vec<FaceMatch>, Vec<usize>) {
    let assigned = assign(similarity, thresholds.review);
    let unmatched = (0..similarity.len())
        .filter(|face_idx| !assigned.iter().any(|a| a.face_idx == *face_idx))
        .collect();
    let matches = assigned
        .iter()
        .map(|pair| {
            let mut candidates: Vec<Scored> = enrolled
                .iter()
                .zip(&similarity[pair.face_idx])
                .map(|(student, &score)| Scored {
                    student: student.clone(),
                    score,
                })
                .collect();
            candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
            candidates.truncate(REVIEW_CANDIDATES);
            FaceMatch {
                student: enrolled[pair.person_idx].clone(),
                score: pair.similarity,
                candidates,
            }
        })
        .collect();
    (matches, unmatched)
}

/// The burst's evidence, fused: each seen student's best frame, and the faces that were not
/// the section's.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Fused {
    /// Per student, the match of the frame where they scored best.
    pub best: BTreeMap<String, FaceMatch>,
    /// Students of other sections confidently seen.
    pub not_on_roster: BTreeSet<String>,
    /// The most unknown faces in any one frame.
    pub unknown_faces: usize,
    /// The most too-small faces in any one frame.
    pub too_small_faces: usize,
}

/// Fuses the frames of a burst over the section's `roster`. A student's best score counts (the
/// first frame wins a tie). Faces are counted by the largest frame, not summed: the same people
/// are in every frame of a burst.
pub fn fuse(frames: &[FrameEvidence], roster: &[String], thresholds: Thresholds) -> Fused {
    let mut fused = Fused::default();
    for frame in frames {
        for found in &frame.matches {
            let better = fused
                .best
                .get(&found.student)
                .is_none_or(|held| found.score > held.score);
            if better {
                fused.best.insert(found.student.clone(), found.clone());
            }
        }
        let mut frame_unknown = 0;
        for face in &frame.unmatched {
            match &face.nearest {
                // Someone of the school who is not on this roster: worth telling the teacher.
                Some(student)
                    if thresholds.verdict(face.score) == Verdict::Confident
                        && !roster.contains(student) =>
                {
                    fused.not_on_roster.insert(student.clone());
                }
                _ => frame_unknown += 1,
            }
        }
        fused.unknown_faces = fused.unknown_faces.max(frame_unknown);
        fused.too_small_faces = fused.too_small_faces.max(frame.too_small);
    }
    fused
}

/// The machine's decision for every student of the roster, as the teacher sees it and as marks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Decisions {
    pub present: Vec<Scored>,
    pub review: Vec<ReviewItem>,
    pub absent: Vec<String>,
    /// One machine mark per student of the roster, in roster order.
    pub marks: Vec<Mark>,
}

/// Decides each student of `roster`: confident is present, between the thresholds is review
/// (with the candidates of their best face), unseen is absent, except students whose templates
/// are all in another embedding space (`need_reenrolment`): the box cannot recognise them, so a
/// teacher decides rather than the machine calling an unchecked student absent.
pub fn decide(
    fused: &Fused,
    roster: &[String],
    need_reenrolment: &[String],
    thresholds: Thresholds,
) -> Decisions {
    let mut decisions = Decisions {
        marks: Vec::with_capacity(roster.len()),
        ..Decisions::default()
    };
    for student in roster {
        let (status, score, candidates) = match fused.best.get(student) {
            Some(best) if thresholds.verdict(best.score) == Verdict::Confident => {
                decisions.present.push(Scored {
                    student: student.clone(),
                    score: best.score,
                });
                (MarkStatus::Present, Some(best.score), None)
            }
            Some(best) => {
                decisions.review.push(ReviewItem {
                    student: student.clone(),
                    candidates: best.candidates.clone(),
                });
                let candidates = Candidates(best.candidates.clone());
                (MarkStatus::Review, Some(best.score), Some(candidates))
            }
            None if need_reenrolment.contains(student) => {
                decisions.review.push(ReviewItem {
                    student: student.clone(),
                    candidates: Vec::new(),
                });
                (MarkStatus::Review, None, Some(Candidates::default()))
            }
            None => {
                decisions.absent.push(student.clone());
                (MarkStatus::Absent, None, None)
            }
        };
        decisions.marks.push(Mark {
            student_id: student.clone(),
            status,
            source: MarkSource::Machine,
            score,
            candidates,
        });
    }
    decisions
}

#[cfg(test)]
mod tests {
    use super::*;

    const THRESHOLDS: Thresholds = Thresholds {
        confident: 0.45,
        review: 0.35,
    };

    fn names(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A frame whose faces score `rows` against `enrolled`, with no school-wide lookup needed.
    fn frame(enrolled: &[String], rows: &[&[f32]]) -> FrameEvidence {
        let similarity: Vec<Vec<f32>> = rows.iter().map(|r| r.to_vec()).collect();
        let (matches, unmatched) = match_faces(enrolled, &similarity, THRESHOLDS);
        FrameEvidence {
            matches,
            unmatched: unmatched
                .into_iter()
                .map(|_| Unmatched {
                    nearest: None,
                    score: f32::MIN,
                })
                .collect(),
            too_small: 0,
        }
    }

    fn statuses(decisions: &Decisions) -> Vec<(&str, MarkStatus)> {
        decisions
            .marks
            .iter()
            .map(|m| (m.student_id.as_str(), m.status))
            .collect()
    }

    fn check(frames: &[FrameEvidence], roster: &[String]) -> (Fused, Decisions) {
        let fused = fuse(frames, roster, THRESHOLDS);
        let decisions = decide(&fused, roster, &[], THRESHOLDS);
        (fused, decisions)
    }

    #[test]
    fn a_face_goes_to_one_student_and_a_student_to_one_face() {
        let enrolled = names(&["ada", "bo"]);
        // Face 0 looks most like ada, but face 1 is an even better match for her.
        let similarity = vec![vec![0.6, 0.5], vec![0.9, 0.1], vec![0.2, 0.3]];
        let (matches, unmatched) = match_faces(&enrolled, &similarity, THRESHOLDS);
        let pairs: Vec<(&str, f32)> = matches
            .iter()
            .map(|m| (m.student.as_str(), m.score))
            .collect();
        assert_eq!(pairs, vec![("ada", 0.9), ("bo", 0.5)]);
        assert_eq!(
            unmatched,
            vec![2],
            "the third face is below review for both"
        );
        // Candidates are the face's best students, best first, not only the one it went to.
        assert_eq!(matches[1].candidates[0].student, "ada");
    }

    #[test]
    fn candidates_are_the_best_three_of_the_section() {
        let enrolled = names(&["a", "b", "c", "d"]);
        let (matches, _) = match_faces(&enrolled, &[vec![0.1, 0.4, 0.3, 0.2]], THRESHOLDS);
        let candidates: Vec<&str> = matches[0]
            .candidates
            .iter()
            .map(|c| c.student.as_str())
            .collect();
        assert_eq!(candidates, vec!["b", "c", "d"]);
    }

    #[test]
    fn frames_that_agree_make_the_student_present_with_the_best_score() {
        let roster = names(&["ada", "bo"]);
        let frames = [
            frame(&roster, &[&[0.5, 0.0]]),
            frame(&roster, &[&[0.7, 0.0]]),
        ];
        let (fused, decisions) = check(&frames, &roster);
        assert_eq!(fused.best["ada"].score, 0.7);
        assert_eq!(
            statuses(&decisions),
            vec![("ada", MarkStatus::Present), ("bo", MarkStatus::Absent)]
        );
        assert_eq!(decisions.marks[0].score, Some(0.7));
        assert_eq!(decisions.absent, names(&["bo"]));
    }

    #[test]
    fn one_confident_frame_outweighs_frames_that_only_half_agree() {
        let roster = names(&["ada"]);
        let frames = [
            frame(&roster, &[&[0.40]]),
            frame(&roster, &[&[0.50]]),
            frame(&roster, &[&[0.38]]),
        ];
        let (_, decisions) = check(&frames, &roster);
        assert_eq!(statuses(&decisions), vec![("ada", MarkStatus::Present)]);
    }

    #[test]
    fn a_student_seen_only_between_the_thresholds_goes_to_review_with_candidates() {
        let roster = names(&["ada", "bo"]);
        // The frames disagree on who the face is, and never confidently: a teacher must look.
        let frames = [
            frame(&roster, &[&[0.40, 0.38]]),
            frame(&roster, &[&[0.36, 0.42]]),
        ];
        let (_, decisions) = check(&frames, &roster);
        assert_eq!(
            statuses(&decisions),
            vec![("ada", MarkStatus::Review), ("bo", MarkStatus::Review)]
        );
        let bo = &decisions.review[1];
        assert_eq!(bo.student, "bo");
        let candidates: Vec<(&str, f32)> = bo
            .candidates
            .iter()
            .map(|c| (c.student.as_str(), c.score))
            .collect();
        assert_eq!(candidates, vec![("bo", 0.42), ("ada", 0.36)]);
        assert_eq!(
            decisions.marks[1].candidates,
            Some(Candidates(bo.candidates.clone()))
        );
    }

    #[test]
    fn a_face_below_review_is_unknown_and_nobody_is_marked_for_it() {
        let roster = names(&["ada"]);
        let frames = [frame(&roster, &[&[0.34]])];
        let (fused, decisions) = check(&frames, &roster);
        assert_eq!(fused.unknown_faces, 1);
        assert_eq!(statuses(&decisions), vec![("ada", MarkStatus::Absent)]);
    }

    #[test]
    fn the_school_wide_lookup_names_other_sections_students_only_when_confident() {
        let roster = names(&["ada"]);
        let elsewhere = |nearest: Option<&str>, score| Unmatched {
            nearest: nearest.map(str::to_owned),
            score,
        };
        let frames = [
            FrameEvidence {
                matches: Vec::new(),
                unmatched: vec![
                    elsewhere(Some("zed"), 0.6),
                    // Not confident: an unknown face, not a name.
                    elsewhere(Some("yan"), 0.4),
                    // On the roster after all (matched below review here): unknown, not news.
                    elsewhere(Some("ada"), 0.9),
                    elsewhere(None, f32::MIN),
                ],
                too_small: 2,
            },
            FrameEvidence {
                matches: Vec::new(),
                unmatched: vec![elsewhere(None, f32::MIN)],
                too_small: 5,
            },
        ];
        let (fused, _) = check(&frames, &roster);
        assert_eq!(fused.not_on_roster, ["zed".to_owned()].into());
        // The largest frame's counts, not the sums.
        assert_eq!((fused.unknown_faces, fused.too_small_faces), (3, 5));
    }

    #[test]
    fn students_the_box_cannot_recognise_go_to_review_not_absent() {
        let roster = names(&["ada", "bo"]);
        let fused = fuse(&[frame(&roster, &[&[0.9, 0.0]])], &roster, THRESHOLDS);
        let decisions = decide(&fused, &roster, &names(&["bo"]), THRESHOLDS);
        assert_eq!(
            statuses(&decisions),
            vec![("ada", MarkStatus::Present), ("bo", MarkStatus::Review)]
        );
        assert!(decisions.review[0].candidates.is_empty());
        assert_eq!(decisions.marks[1].score, None);
        assert_eq!(decisions.marks[1].candidates, Some(Candidates::default()));
    }

    #[test]
    fn an_empty_burst_marks_everyone_absent_by_the_machine() {
        let roster = names(&["ada", "bo"]);
        let (fused, decisions) = check(&[], &roster);
        assert_eq!(fused, Fused::default());
        assert_eq!(decisions.absent, roster);
        assert!(
            decisions
                .marks
                .iter()
                .all(|m| m.source == MarkSource::Machine && m.score.is_none())
        );
    }
}
