use super::cases::{RosterState, cases, enrolment_key, roster};
use super::*;

/// The ids of each part of a kind's diff, for comparing inline.
fn ids<T: RosterRecord>(records: &[&T]) -> Vec<String> {
    records.iter().map(|r| shown(r.key())).collect()
}

fn shown(key: RecordKey<'_>) -> String {
    match key {
        RecordKey::Id(id) => id.to_owned(),
        RecordKey::Enrolment {
            section_id,
            person_id,
        } => enrolment_key(section_id, person_id),
    }
}

/// (inserts, updates, deactivations) of one kind.
fn parts<T: RosterRecord>(diff: &RecordDiff<'_, T>) -> [Vec<String>; 3] {
    let updated: Vec<&T> = diff.updates.iter().map(|u| u.wanted).collect();
    [ids(&diff.inserts), ids(&updated), ids(&diff.deactivations)]
}

fn check_students(
    held: &RosterImport,
    batch: &RosterImport,
    scope: ImportScope,
    expected: [&[&str]; 3],
) {
    let diff = roster_diff(held, batch, scope).expect("diff");
    let expected = expected.map(|ids| ids.iter().map(|id| (*id).to_owned()).collect::<Vec<_>>());
    assert_eq!(parts(&diff.students), expected);
}

#[test]
fn unchanged_rows_write_nothing_and_changed_rows_are_updates() {
    let held = roster(&["c1"], &["s1", "s2=Ada", "-s3"], &[], &[]);
    let batch = roster(&["c1"], &["s1", "s2=Eve", "s3", "s4"], &[], &[]);
    check_students(
        &held,
        &batch,
        ImportScope::Full,
        [&["s4"], &["s2", "s3"], &[]],
    );
    let diff = roster_diff(&held, &held, ImportScope::Full).expect("diff");
    assert_eq!(diff.n_writes(), 0);
}

#[test]
fn the_last_row_of_an_id_wins_and_is_written_once() {
    let held = roster(&[], &["s1", "s2"], &[], &[]);
    // s1 changes and changes back: nothing to write. s2 ends inactive. s5 is new, twice.
    let batch = roster(&[], &["s1=Ada", "s2", "s5", "s1", "-s2", "s5=Bo"], &[], &[]);
    let diff = roster_diff(&held, &batch, ImportScope::Full).expect("diff");
    assert_eq!(parts(&diff.students), [vec!["s5"], vec!["s2"], vec![]]);
    assert_eq!(diff.students.inserts[0].given_name, "Bo");
    assert!(!diff.students.updates[0].wanted.active);
    assert_eq!(diff.counts().students, 3, "distinct ids");
}

#[test]
fn full_deactivates_what_it_leaves_out_and_partial_does_not() {
    let held = roster(&[], &["s1", "s2", "-s3"], &[], &[]);
    let batch = roster(&[], &["s1"], &[], &[]);
    // s3 is inactive already: nothing to write.
    check_students(&held, &batch, ImportScope::Full, [&[], &[], &["s2"]]);
    check_students(&held, &batch, ImportScope::Partial, [&[], &[], &[]]);
}

#[test]
fn a_row_named_inactive_is_an_update_not_a_deactivation() {
    let held = roster(&[], &["s1"], &[], &[]);
    let batch = roster(&[], &["-s1"], &[], &[]);
    let diff = roster_diff(&held, &batch, ImportScope::Full).expect("diff");
    assert_eq!(parts(&diff.students), [vec![], vec!["s1"], vec![]]);
    assert_eq!(diff.counts().deactivated, 0);
}

#[test]
fn an_enrolment_whose_person_is_dropped_is_deactivated_with_them() {
    let held = roster(&["c1"], &["s1", "s2"], &[], &["c1/s1", "c1/s2"]);
    let batch = roster(&["c1"], &["s1"], &[], &["c1/s1"]);
    let diff = roster_diff(&held, &batch, ImportScope::Full).expect("diff");
    assert_eq!(ids(&diff.students.deactivations), ["s2"]);
    assert_eq!(ids(&diff.enrolments.deactivations), ["c1/s2"]);
    assert_eq!(diff.counts().deactivated, 2);
}

#[test]
fn an_enrolment_in_a_section_the_school_lacks_is_refused() {
    let held = roster(&["c1"], &["s1"], &[], &["c1/s1"]);
    // c9 is neither held nor in the batch: another school's, or nobody's.
    let batch = roster(&[], &[], &[], &["c9/s1"]);
    let refused = roster_diff(&held, &batch, ImportScope::Partial).err();
    assert_eq!(
        refused,
        Some(RosterDiffError::UnknownSection {
            section_id: "c9".into(),
            person_id: "s1".into()
        })
    );
    // A section the batch brings is fine, and so is one held.
    let batch = roster(&["c9"], &[], &[], &["c9/s1", "c1/s1:teacher"]);
    assert!(roster_diff(&held, &batch, ImportScope::Partial).is_ok());
}

/// A record with a field the roster does not own, as the server's student has consent.
#[derive(Debug)]
struct WithConsent {
    id: &'static str,
    name: &'static str,
    consent: bool,
}

impl RosterRecord for WithConsent {
    fn key(&self) -> RecordKey<'_> {
        RecordKey::Id(self.id)
    }
    fn is_active(&self) -> bool {
        true
    }
    fn same_roster_fields(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

#[test]
fn fields_a_roster_does_not_own_cause_no_write() {
    let held = [WithConsent {
        id: "s1",
        name: "Ada",
        consent: true,
    }];
    let batch = [WithConsent {
        id: "s1",
        name: "Ada",
        consent: false,
    }];
    let diff = record_diff(&held, &batch, ImportScope::Full);
    assert_eq!(diff.n_writes(), 0);
    assert!(held[0].consent && !batch[0].consent);
}

/// Applies a diff to an in-memory roster: the reference every store is held to.
fn apply(
    held: &RosterImport,
    batch: &RosterImport,
    scope: ImportScope,
) -> (RosterImport, RosterCounts, usize) {
    fn apply_kind<T: RosterRecord + Clone>(
        held: &[T],
        diff: &RecordDiff<'_, T>,
        deactivated: impl Fn(&T) -> T,
    ) -> Vec<T> {
        let mut after: Vec<T> = held.to_vec();
        for update in &diff.updates {
            let i = after
                .iter()
                .position(|r| r.key() == update.held.key())
                .expect("held");
            after[i] = update.wanted.clone();
        }
        for gone in &diff.deactivations {
            let i = after
                .iter()
                .position(|r| r.key() == gone.key())
                .expect("held");
            after[i] = deactivated(&after[i]);
        }
        after.extend(diff.inserts.iter().map(|r| (*r).clone()));
        after
    }
    let diff = roster_diff(held, batch, scope).expect("diff");
    let off_person = |p: &Person| Person {
        active: false,
        ..p.clone()
    };
    let after = RosterImport {
        sections: apply_kind(&held.sections, &diff.sections, |s| Section {
            active: false,
            ..s.clone()
        }),
        students: apply_kind(&held.students, &diff.students, off_person),
        teachers: apply_kind(&held.teachers, &diff.teachers, off_person),
        enrolments: apply_kind(&held.enrolments, &diff.enrolments, |e| Enrolment {
            active: false,
            ..e.clone()
        }),
        ..RosterImport::default()
    };
    (after, diff.counts(), diff.n_writes())
}

fn state_of(roster: &RosterImport) -> RosterState {
    let by_id = |people: &[Person]| people.iter().map(|p| (p.id.clone(), p.active)).collect();
    RosterState {
        sections: roster
            .sections
            .iter()
            .map(|s| (s.id.clone(), s.active))
            .collect(),
        students: by_id(&roster.students),
        teachers: by_id(&roster.teachers),
        enrolments: roster
            .enrolments
            .iter()
            .map(|e| (enrolment_key(&e.section_id, &e.person_id), e.active))
            .collect(),
    }
}

#[test]
fn the_shared_cases_hold_for_the_diff_itself() {
    for case in cases() {
        let (held, _, _) = apply(&RosterImport::default(), &case.held, ImportScope::Full);
        let (after, counts, n_writes) = apply(&held, &case.batch, case.scope);
        assert_eq!(state_of(&after), case.expected, "{}", case.name);
        assert_eq!(counts.deactivated, case.deactivated, "{}", case.name);
        assert_eq!(n_writes, case.n_writes, "{}", case.name);
        // Applying the same batch again changes nothing more.
        let (_, _, n_again) = apply(&after, &case.batch, case.scope);
        assert_eq!(
            n_again, 0,
            "{}: a second application writes nothing",
            case.name
        );
    }
}
