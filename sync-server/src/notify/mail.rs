//! What a notice says and how it travels: the templates (plain text and HTML, one pair per
//! audience, autoescaped by extension), the signed unsubscribe link, and the SMTP message.
//! Names come from people's input: the HTML template escapes them, and a header never carries
//! one raw (lettre encodes headers; a CR or LF in a subject is replaced first).

use askama::Template;
use hmac::{Hmac, Mac};
use lettre::Message;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use sha2::Sha256;

use crate::domain::notice::{Kind, Letter};

/// One lesson line of a guardian's notice.
#[derive(Clone, Debug)]
pub struct Line {
    /// The student's given name.
    pub name: String,
    /// `absent` or `late`.
    pub status: String,
    pub lesson: String,
    /// `HH:MM`, school time.
    pub time: String,
}

/// The plain text and the HTML of a guardian's notice read the same fields; the HTML adds the
/// subject for its title.
#[derive(Template)]
#[template(path = "mail/guardian.txt")]
struct GuardianText<'a> {
    mail: &'a GuardianMail,
}

#[derive(Template)]
#[template(path = "mail/guardian.html")]
struct GuardianHtml<'a> {
    subject: &'a str,
    mail: &'a GuardianMail,
}

/// A guardian's notice, before rendering.
#[derive(Clone, Debug)]
pub struct GuardianMail {
    pub school: String,
    /// The guardian's name.
    pub greeting: String,
    /// The school day, for people ("Tuesday 1 December 2026").
    pub date: String,
    pub correction: bool,
    /// What they are told (a first notice) or what is new (a correction).
    pub lines: Vec<Line>,
    /// A correction's lessons that no longer count as absent or late.
    pub withdrawn: Vec<Line>,
    pub unsubscribe: String,
}

/// Subject, plain text and HTML.
pub type Rendered = (String, String, String);

impl GuardianMail {
    pub fn render(&self) -> Result<Rendered, askama::Error> {
        let mut names: Vec<&str> = self
            .lines
            .iter()
            .chain(&self.withdrawn)
            .map(|l| l.name.as_str())
            .collect();
        names.dedup();
        let names = match names.as_slice() {
            [] => String::new(),
            [one] => (*one).to_owned(),
            [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
        };
        let subject = one_line(&if self.correction {
            format!("{}: correction for {names}, {}", self.school, self.date)
        } else {
            format!("{}: {names} missed lessons on {}", self.school, self.date)
        });
        let text = GuardianText { mail: self }.render()?;
        let html = GuardianHtml {
            subject: &subject,
            mail: self,
        }
        .render()?;
        Ok((subject, text, html))
    }
}

/// The admins' daily digest.
#[derive(Clone, Debug, Default)]
pub struct Digest {
    /// "Maths 7B, 09:00-09:45".
    pub not_registered: Vec<String>,
    /// (section title, absences today), by title.
    pub absences: Vec<(String, u64)>,
    pub chronic_percent: u8,
    /// Students newly at or over the threshold: "Ann Lee (12 %)".
    pub newly_chronic: Vec<String>,
    /// "Room 12 box, last heard 08:10".
    pub offline: Vec<String>,
    /// Boxes whose marks carry the wrong time: "Room 12 box, clock 3 days behind the server's".
    pub clock_off: Vec<String>,
    pub purges_pending: usize,
    pub failed_notices: usize,
    /// The ids of the students it names.
    pub named: Vec<String>,
}

/// A box offline during lessons.
#[derive(Clone, Debug)]
pub struct Alert {
    pub name: String,
    /// When it was last heard from, for people ("08:10", "never").
    pub since: String,
    pub minutes: u32,
}

#[derive(Template)]
#[template(path = "mail/admin.txt")]
struct AdminText<'a> {
    school: &'a str,
    date: &'a str,
    d: &'a Digest,
    alert: Option<&'a Alert>,
    clock_fix: &'static str,
}

#[derive(Template)]
#[template(path = "mail/admin.html")]
struct AdminHtml<'a> {
    subject: &'a str,
    school: &'a str,
    date: &'a str,
    d: &'a Digest,
    alert: Option<&'a Alert>,
    clock_fix: &'static str,
}

/// The admins' digest (`alert: None`) or an alert.
pub fn render_admin(
    school: &str,
    date: &str,
    digest: &Digest,
    alert: Option<&Alert>,
) -> Result<Rendered, askama::Error> {
    let subject = one_line(&match alert {
        Some(a) => format!("{school}: {} is offline", a.name),
        None => format!("{school}: attendance digest, {date}"),
    });
    let text = AdminText {
        school,
        date,
        d: digest,
        alert,
        clock_fix: shared_proto::clock::CLOCK_FIX,
    }
    .render()?;
    let html = AdminHtml {
        subject: &subject,
        school,
        date,
        d: digest,
        alert,
        clock_fix: shared_proto::clock::CLOCK_FIX,
    }
    .render()?;
    Ok((subject, text, html))
}

/// A school day as notices name it: `Tuesday 1 December 2026`.
pub fn long_date(day: jiff::civil::Date) -> String {
    day.strftime("%A %-d %B %Y").to_string()
}

/// What a school's notices of `kind` look like, rendered by the same templates from example
/// people, lessons and boxes (the dashboard's preview: nothing is stored or sent). `date`: a day
/// for people, `unsubscribe`: the link a guardian's notice would carry.
pub fn preview(
    kind: Kind,
    school: &str,
    date: &str,
    unsubscribe: &str,
) -> Result<Rendered, askama::Error> {
    let line = |name: &str, status: &str, lesson: &str, time: &str| Line {
        name: name.to_owned(),
        status: status.to_owned(),
        lesson: lesson.to_owned(),
        time: time.to_owned(),
    };
    let guardian = |correction: bool, lines: Vec<Line>, withdrawn: Vec<Line>| GuardianMail {
        school: school.to_owned(),
        greeting: "Jordan Example".to_owned(),
        date: date.to_owned(),
        correction,
        lines,
        withdrawn,
        unsubscribe: unsubscribe.to_owned(),
    };
    let digest = Digest {
        not_registered: vec!["Maths 7B, 09:00-09:45".to_owned()],
        absences: vec![("English 7B".to_owned(), 2), ("Maths 7B".to_owned(), 3)],
        chronic_percent: 10,
        newly_chronic: vec!["Alex Example (12 %)".to_owned()],
        offline: vec!["Room 12 box, last heard 08:10".to_owned()],
        clock_off: vec!["Room 3 box, clock 3 days behind the server's".to_owned()],
        purges_pending: 0,
        failed_notices: 1,
        named: Vec::new(),
    };
    match kind {
        Kind::Absence => guardian(
            false,
            vec![
                line("Alex", "absent", "Maths 7B", "09:00"),
                line("Alex", "late", "English 7B", "11:15"),
                line("Sam", "absent", "Science 4A", "13:30"),
            ],
            Vec::new(),
        )
        .render(),
        Kind::Correction => guardian(
            true,
            vec![line("Alex", "late", "Maths 7B", "09:00")],
            vec![line("Alex", "absent", "Maths 7B", "09:00")],
        )
        .render(),
        Kind::AdminDigest => render_admin(school, date, &digest, None),
        Kind::OfflineAlert => render_admin(
            school,
            date,
            &digest,
            Some(&Alert {
                name: "Room 12 box".to_owned(),
                since: "08:10".to_owned(),
                minutes: 15,
            }),
        ),
    }
}

/// A header value from people's input on one line: control characters (CR, LF) become spaces.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The key that signs unsubscribe links, read from the store once per process (and made there by
/// the first process that needs it): every process on one database signs alike.
#[derive(Default)]
pub struct Secret(tokio::sync::OnceCell<String>);

impl Secret {
    pub async fn get(
        &self,
        store: &dyn crate::store::Store,
    ) -> Result<&str, crate::store::StoreError> {
        self.0
            .get_or_try_init(|| async {
                let fresh = hex::encode(uuid::Uuid::new_v4().as_bytes())
                    + &hex::encode(uuid::Uuid::new_v4().as_bytes());
                store.notice_secret(&fresh).await
            })
            .await
            .map(String::as_str)
    }
}

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, school: &str, guardian: &str) -> HmacSha256 {
    let mut mac =
        HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    for part in ["unsubscribe", school, guardian] {
        mac.update(part.as_bytes());
        mac.update(&[0]);
    }
    mac
}

/// The token of a guardian's unsubscribe link: it names them and cannot be made without the
/// server's secret.
pub fn unsubscribe_token(secret: &str, school: &str, guardian: &str) -> String {
    hex::encode(mac(secret, school, guardian).finalize().into_bytes())
}

/// Whether `token` is the one `unsubscribe_token` makes (compared in constant time).
pub fn token_holds(secret: &str, school: &str, guardian: &str, token: &str) -> bool {
    let Ok(bytes) = hex::decode(token) else {
        return false;
    };
    mac(secret, school, guardian).verify_slice(&bytes).is_ok()
}

/// The link in a guardian's notice; `List-Unsubscribe` carries the same URL.
pub fn unsubscribe_url(public_url: &str, secret: &str, school: &str, guardian: &str) -> String {
    let query = serde_urlencoded::to_string([
        ("school", school),
        ("guardian", guardian),
        ("token", &unsubscribe_token(secret, school, guardian)),
    ])
    .unwrap_or_default();
    format!("{}/unsubscribe?{query}", public_url.trim_end_matches('/'))
}

/// Why a notice cannot become a message (kept on the notice as its failure).
#[derive(Debug, thiserror::Error)]
pub enum MessageError {
    #[error("the recipient {0:?} is not an address lettre accepts: {1}")]
    Recipient(String, String),
    #[error("cannot build the message: {0}")]
    Build(String),
}

/// The SMTP message of `letter`, from `from`, with its Message-ID and, for a guardian's notice,
/// RFC 8058 one-click unsubscribe headers (`unsubscribe`: the link).
pub fn message(
    letter: &Letter,
    from: &Mailbox,
    unsubscribe: Option<&str>,
) -> Result<Message, MessageError> {
    let to: Mailbox = letter
        .recipient
        .parse()
        .map_err(|e: lettre::address::AddressError| {
            MessageError::Recipient(letter.recipient.clone(), e.to_string())
        })?;
    let mut builder = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(one_line(&letter.subject))
        .message_id(Some(letter.message_id.clone()));
    if let Some(url) = unsubscribe {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe"),
                format!("<{url}>"),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
                "List-Unsubscribe=One-Click".to_owned(),
            ));
    }
    builder
        .multipart(MultiPart::alternative_plain_html(
            letter.text.clone(),
            letter.html.clone(),
        ))
        .map_err(|e| MessageError::Build(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unsubscribe_tokens_name_one_guardian() {
        let token = unsubscribe_token("secret", "school", "g1");
        assert!(token_holds("secret", "school", "g1", &token));
        assert!(!token_holds("secret", "school", "g2", &token));
        assert!(!token_holds("other", "school", "g1", &token));
        assert!(!token_holds("secret", "school", "g1", "zz"));
    }

    #[test]
    fn names_cannot_inject_headers_or_markup() {
        let mail = GuardianMail {
            school: "Hill\r\nBcc: all@example.org School".into(),
            greeting: "<script>alert(1)</script> Doe".into(),
            date: "Tuesday 1 December 2026".into(),
            correction: false,
            lines: vec![Line {
                name: "<b>Ann</b>".into(),
                status: "absent".into(),
                lesson: "Maths & <i>Art</i>".into(),
                time: "08:00".into(),
            }],
            withdrawn: Vec::new(),
            unsubscribe: "https://school.example/unsubscribe?x=1&y=2".into(),
        };
        let (subject, text, html) = mail.render().unwrap();
        assert!(!subject.contains('\n') && !subject.contains('\r'));
        assert!(text.contains("<b>Ann</b> was absent in Maths & <i>Art</i> at 08:00"));
        assert!(!html.contains("<script>") && !html.contains("<b>Ann"));
        assert!(html.contains("&#60;b&#62;Ann&#60;/b&#62;"));
    }
}
