//! Messages that carry several responses (or stored rows): those bound for one routing key
//! (a form) go together, as a JSON array, so that the broker's work per message is shared.
//! ingest gathers what it publishes to `N.responses`, the validator what it publishes to
//! `N.saved`.

/// Groups items by their routing key, in order: the positions of the items of each message, at
/// most `max_items` (at least 1) and about `max_bytes` of bodies each (an item larger than that
/// goes alone). `items` are each one's routing key and body length.
pub fn group_by_key<'a>(
    items: impl IntoIterator<Item = (&'a str, usize)>,
    max_items: usize,
    max_bytes: usize,
) -> Vec<Vec<usize>> {
    let mut messages: Vec<Vec<usize>> = Vec::new();
    // Each routing key's message being filled, and its bytes so far.
    let mut open: std::collections::HashMap<&str, (usize, usize)> =
        std::collections::HashMap::new();
    for (position, (key, length)) in items.into_iter().enumerate() {
        match open.get_mut(key) {
            Some((message, bytes))
                if messages[*message].len() < max_items.max(1) && *bytes + length <= max_bytes =>
            {
                messages[*message].push(position);
                *bytes += length + 1;
            }
            _ => {
                open.insert(key, (messages.len(), length + 1));
                messages.push(vec![position]);
            }
        }
    }
    messages
}

/// The body of a message carrying these JSON bodies: the one body itself, or a JSON array of
/// them.
pub fn json_array_body(parts: &[&[u8]]) -> Vec<u8> {
    if let [one] = parts {
        return one.to_vec();
    }
    let size = parts.iter().map(|p| p.len() + 1).sum::<usize>() + 1;
    let mut body = Vec::with_capacity(size);
    body.push(b'[');
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(part);
    }
    body.push(b']');
    body
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::{group_by_key, json_array_body};

    #[test]
    fn items_are_grouped_by_key_in_order_within_the_limits() {
        let keys = ["a", "b", "a", "a", "c", "a", "b"];
        let items = || keys.iter().map(|&k| (k, 10));
        assert_eq!(
            group_by_key(items(), 2, usize::MAX),
            [vec![0, 2], vec![1, 6], vec![3, 5], vec![4]]
        );
        assert_eq!(
            group_by_key(items(), 1, usize::MAX),
            (0..7).map(|i| vec![i]).collect::<Vec<_>>()
        );
        assert_eq!(
            group_by_key(items(), 100, usize::MAX),
            [vec![0, 2, 3, 5], vec![1, 6], vec![4]]
        );
        // 10 bytes and a separator each: two fit in 25 bytes, not three.
        assert_eq!(
            group_by_key(items(), 100, 25),
            [vec![0, 2], vec![1, 6], vec![3, 5], vec![4]]
        );
        // A larger item goes alone, and the next starts a new message.
        let sized = [("a", 5), ("a", 50), ("a", 5), ("a", 5)];
        assert_eq!(group_by_key(sized, 100, 20), [vec![0], vec![1], vec![2, 3]]);
        assert!(group_by_key([], 100, 20).is_empty());
    }

    #[test]
    fn one_body_goes_as_itself_more_as_an_array() {
        assert_eq!(json_array_body(&[br#"{"a":1}"#]), br#"{"a":1}"#);
        let body = json_array_body(&[br#"{"a":1}"#, br#"{"b":2}"#]);
        assert_eq!(body, br#"[{"a":1},{"b":2}]"#);
        let parsed: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(parsed[1]["b"], 2);
    }
}
