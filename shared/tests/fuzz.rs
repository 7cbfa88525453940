//! Every decoder of text that crosses a trust boundary, on arbitrary
//! input: frames a client sends (moltd parses them), frames a server sends
//! (the console parses them), and the records moltd reads back from disk.
//! None may panic or recurse without bound; each answers with a value or
//! an error. Bounded case counts keep this in the normal test run.

use molt_protocol::Request;
use molt_protocol::frame::{ClientFrame, ServerFrame};
use molt_protocol::update::{RunRecord, Sentinel};
use proptest::prelude::*;

/// Text that is often almost JSON: the interesting inputs for a parser.
fn jsonish() -> impl Strategy<Value = String> {
    let token = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just(",".to_owned()),
        Just(":".to_owned()),
        Just("\"type\"".to_owned()),
        Just("\"req\"".to_owned()),
        Just("\"id\"".to_owned()),
        Just("\"method\"".to_owned()),
        Just("\"params\"".to_owned()),
        Just("\"connect\"".to_owned()),
        Just("\"update.run\"".to_owned()),
        Just("\"config.patch\"".to_owned()),
        Just("null".to_owned()),
        Just("1e999".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        "\"\\PC{0,12}\"",
    ];
    proptest::collection::vec(token, 0..60).prop_map(|t| t.concat())
}

fn decode_everything(text: &str) {
    if let Ok(frame) = ClientFrame::parse(text) {
        let _ = Request::from_frame(&frame);
    }
    let _ = ServerFrame::parse(text);
    let _ = serde_json::from_str::<Sentinel>(text);
    let _ = serde_json::from_str::<RunRecord>(text);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
        decode_everything(&text);
    }

    #[test]
    fn almost_json_never_panics(text in jsonish()) {
        decode_everything(&text);
    }

    #[test]
    fn any_method_with_any_params_is_decoded_or_refused(
        method in "[a-z.]{0,24}",
        params in jsonish(),
    ) {
        let text = format!(r#"{{"type":"req","id":"1","method":"{method}","params":{params}}}"#);
        decode_everything(&text);
    }
}

#[test]
fn a_frame_nested_past_the_parsers_limit_is_an_error_not_a_crash() {
    let depth = 200_000;
    let params = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    let text = format!(r#"{{"type":"req","id":"1","method":"status","params":{params}}}"#);
    let err = ClientFrame::parse(&text).unwrap_err().to_string();
    assert!(err.contains("recursion limit"), "{err}");
    assert!(ServerFrame::parse(&text).is_err());
}
