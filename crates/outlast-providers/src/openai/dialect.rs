//! Rewrites for OpenAI-compatible providers that depart from OpenAI's request format.

use serde_json::Value;

/// Mistral: tool-call ids must match `[a-zA-Z0-9]{9}` (it rejects OpenAI's `call_...` ids with
/// a 400), the seed is `random_seed`, and "required" tool choice is spelled `"any"`. Ids are
/// rewritten by a pure function of the original, so an assistant's tool call and the tool
/// result that answers it keep matching across turns and across requests.
pub(crate) fn mistral(req: &mut Value) {
    let Some(o) = req.as_object_mut() else { return };
    if let Some(seed) = o.remove("seed") {
        o.entry("random_seed").or_insert(seed);
    }
    if o.get("tool_choice").and_then(Value::as_str) == Some("required") {
        o.insert("tool_choice".into(), Value::from("any"));
    }
    let Some(messages) = o.get_mut("messages").and_then(Value::as_array_mut) else {
        return;
    };
    for m in messages {
        if let Some(calls) = m.get_mut("tool_calls").and_then(Value::as_array_mut) {
            for call in calls {
                if let Some(id) = call.get_mut("id") {
                    rewrite(id);
                }
            }
        }
        if let Some(id) = m.get_mut("tool_call_id") {
            rewrite(id);
        }
    }
}

fn rewrite(id: &mut Value) {
    if let Some(s) = id.as_str() {
        *id = Value::from(mistral_id(s));
    }
}

/// A 9-character alphanumeric id derived from `id` (kept as is when it already fits).
pub(crate) fn mistral_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_string();
    }
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    // FNV-1a, then base 62: stable across processes and versions.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    (0..9)
        .map(|_| {
            let c = ALPHABET.get((h % 62) as usize).copied().unwrap_or(b'A');
            h /= 62;
            if h == 0 {
                h = 0x9e37_79b9_7f4a_7c15;
            }
            char::from(c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mistral_rewrites_ids_consistently_and_renames_fields() {
        let mut v = json!({
            "model": "mistral-small-latest", "seed": 7, "tool_choice": "required",
            "messages": [
                {"role": "user", "content": "weather?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_0fypS1hVXlongid", "type": "function", "function": {"name": "w", "arguments": "{}"}},
                    {"id": "abc123XYZ", "type": "function", "function": {"name": "t", "arguments": "{}"}}
                ]},
                {"role": "tool", "tool_call_id": "call_0fypS1hVXlongid", "content": "sunny"},
                {"role": "tool", "tool_call_id": "abc123XYZ", "content": "noon"}
            ]
        });
        mistral(&mut v);
        assert_eq!(v["random_seed"], 7);
        assert!(v.get("seed").is_none());
        assert_eq!(v["tool_choice"], "any");
        let new_id = v["messages"][1]["tool_calls"][0]["id"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(new_id.len(), 9);
        assert!(new_id.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_eq!(
            v["messages"][2]["tool_call_id"],
            new_id.as_str(),
            "call and result still match"
        );
        assert_eq!(
            v["messages"][1]["tool_calls"][1]["id"], "abc123XYZ",
            "a valid id is kept"
        );
        assert_eq!(v["messages"][3]["tool_call_id"], "abc123XYZ");
        assert_ne!(mistral_id("call_a"), mistral_id("call_b"));
    }
}
