//! Query strings and paged collections, as Octopus clients send and read them: `skip`/`take`
//! (take clamped, never used to size an allocation), `ids` in three encodings, `partialName`
//! with `+` or `%20`, and the `Items/TotalResults/ItemsPerPage/…/Links` envelope.

use serde_json::{Value, json};

/// Decoded query parameters; names compare case-insensitively.
#[derive(Clone, Debug, Default)]
pub struct Params(Vec<(String, String)>);

/// `take` when none is given.
pub const DEFAULT_TAKE: i64 = 30;
/// The largest `take` honoured (int32 max, the TS client's "all").
pub const MAX_TAKE: i64 = 2_147_483_647;

impl Params {
    pub fn parse(raw: Option<&str>) -> Params {
        let mut out = Vec::new();
        for pair in raw.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            out.push((decode(k), decode(v)));
        }
        Params(out)
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// All values of a list parameter: repeated keys and comma-separated values both count.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.0
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .flat_map(|(_, v)| v.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }

    pub fn bool(&self, name: &str) -> Option<bool> {
        self.get(name)
            .map(|v| v.eq_ignore_ascii_case("true") || v == "1")
    }

    pub fn skip(&self) -> i64 {
        self.get("skip")
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(0)
            .clamp(0, MAX_TAKE)
    }

    pub fn take(&self) -> i64 {
        self.get("take")
            .and_then(|s| s.parse::<i64>().ok())
            .unwrap_or(DEFAULT_TAKE)
            .clamp(0, MAX_TAKE)
    }
}

fn decode(s: &str) -> String {
    let plus = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus)
        .decode_utf8_lossy()
        .to_string()
}

/// The items `keep` lets through, and one page of them (`skip`/`take`; every one when `all`),
/// with the count of all that were kept: lists filtered in memory (what a caller may see) page
/// after filtering so totals count only those.
pub fn keep_page<T>(
    items: Vec<T>,
    keep: impl Fn(&T) -> bool,
    skip: i64,
    take: i64,
    all: bool,
) -> (Vec<T>, i64) {
    let kept: Vec<T> = items.into_iter().filter(|i| keep(i)).collect();
    let total = i64::try_from(kept.len()).unwrap_or(i64::MAX);
    if all {
        return (kept, total);
    }
    let page = kept
        .into_iter()
        .skip(usize::try_from(skip).unwrap_or(usize::MAX))
        .take(usize::try_from(take).unwrap_or(usize::MAX))
        .collect();
    (page, total)
}

/// Builds the paged envelope. `base` is the collection's path (e.g. `/api/Spaces-1/projects`),
/// `template` its link template.
pub fn page(
    item_type: &str,
    items: Vec<Value>,
    total: i64,
    skip: i64,
    take: i64,
    base: &str,
    template: &str,
) -> Value {
    let per_page = take.max(1);
    let pages = if total == 0 {
        1
    } else {
        (total + per_page - 1) / per_page
    };
    let last_skip = (pages - 1) * per_page;
    let mut links = serde_json::Map::new();
    links.insert(
        "Self".into(),
        json!(format!("{base}?skip={skip}&take={take}")),
    );
    links.insert("Template".into(), json!(template));
    links.insert(
        "Page.All".into(),
        json!(format!("{base}?skip=0&take={MAX_TAKE}")),
    );
    links.insert(
        "Page.Current".into(),
        json!(format!("{base}?skip={skip}&take={take}")),
    );
    if skip.saturating_add(take) < total && take > 0 {
        links.insert(
            "Page.Next".into(),
            json!(format!("{base}?skip={}&take={take}", skip + take)),
        );
    }
    links.insert(
        "Page.Last".into(),
        json!(format!("{base}?skip={last_skip}&take={take}")),
    );
    json!({
        "ItemType": item_type,
        "TotalResults": total,
        "ItemsPerPage": take,
        "NumberOfPages": pages,
        "LastPageNumber": pages - 1,
        "Items": items,
        "Links": Value::Object(links),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_in_three_encodings() {
        let p = Params::parse(Some(
            "ids=a,b&ids=c&IDS=d%2Ce&partialName=Fire+Project&x=%20y",
        ));
        assert_eq!(p.list("ids"), vec!["a", "b", "c", "d", "e"]);
        assert_eq!(p.get("partialname"), Some("Fire Project"));
        assert_eq!(p.get("x"), Some(" y"));
    }

    #[test]
    fn take_is_clamped() {
        assert_eq!(Params::parse(Some("take=99999999999")).take(), MAX_TAKE);
        assert_eq!(Params::parse(Some("take=-4")).take(), 0);
        assert_eq!(Params::parse(None).take(), DEFAULT_TAKE);
    }

    #[test]
    fn next_link_only_when_more() {
        let v = page("X", vec![], 45, 0, 30, "/api/x", "/api/x{?skip}");
        assert_eq!(v["Links"]["Page.Next"], "/api/x?skip=30&take=30");
        assert_eq!(v["NumberOfPages"], 2);
        assert_eq!(v["LastPageNumber"], 1);
        let v = page("X", vec![], 45, 30, 30, "/api/x", "/api/x{?skip}");
        assert!(v["Links"].get("Page.Next").is_none());
    }
}
