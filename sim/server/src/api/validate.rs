//! The checks that turn a parsed request into a [`Validated`] one: vLLM's own rules and messages
//! for each field, and the model name.

use std::sync::Arc;

use super::parse::field_error;
use super::request::{
    ChatMessage, ChatRequest, CompletionRequest, Content, PromptInput, Sampling, Stop,
    StreamOptions,
};
use super::{Endpoint, clip, lax, parse_json};
use crate::errors::ApiError;
use servesim_sim::frontend::{Prompt, RequestSpec};

/// The generation endpoints' parsing and validation as one pure function of the body: JSON into
/// the endpoint's request, the model name against the served names, then every field check.
/// Everything input-dependent that happens before token counting and the engine's context check;
/// the fuzz target (`fuzz/`) and the bad-request corpus test drive it. Never panics.
pub fn check_request(
    endpoint: Endpoint,
    body: &[u8],
    served_models: &[impl AsRef<str>],
) -> Result<Validated, ApiError> {
    let (model, validated) = match endpoint {
        Endpoint::Chat => {
            let req = ChatRequest::parse(body)?;
            (req.model.clone(), req.validate())
        }
        Endpoint::Completions => {
            let req = CompletionRequest::parse(body)?;
            (req.model.clone(), req.validate())
        }
    };
    check_model(model.as_deref(), served_models)?;
    validated
}

/// 404 unless `model` is absent or one of the served names (`--served-model-name` may give several;
/// vLLM answers to any of them and lists them all in the error).
pub fn check_model(model: Option<&str>, served_models: &[impl AsRef<str>]) -> Result<(), ApiError> {
    match model {
        Some(m) if !served_models.iter().any(|s| s.as_ref() == m) => Err(ApiError::ModelNotFound {
            requested: clip(m, 200).to_string(),
            served: served_models
                .iter()
                .map(AsRef::as_ref)
                .collect::<Vec<_>>()
                .join(", "),
        }),
        _ => Ok(()),
    }
}

/// vLLM's default `max_tokens` for `/v1/completions` (the legacy OpenAI default); chat defaults to
/// whatever room the context leaves.
pub const COMPLETIONS_DEFAULT_MAX_TOKENS: u32 = 16;

/// A request that passed validation: what the engine gets and how to answer.
#[derive(Debug, Clone)]
pub struct Validated {
    pub prompt: Prompt,
    /// `max_tokens` as asked; `None` means "fill the context" (chat without a limit).
    pub max_tokens: Option<u32>,
    pub ignore_eos: bool,
    pub min_tokens: u32,
    pub stream: bool,
    pub include_usage: bool,
    pub stop: Vec<String>,
    /// Seed of the filler text (the request's `seed`, when given).
    pub seed: Option<u64>,
    /// Text the `echo` text mode repeats.
    pub echo_source: Arc<str>,
}

impl Validated {
    /// The frontend's view, with the resolved output limit.
    pub fn spec(&self, max_tokens: u32) -> RequestSpec {
        RequestSpec {
            prompt: self.prompt.clone(),
            max_tokens,
            ignore_eos: self.ignore_eos,
            min_tokens: self.min_tokens,
        }
    }
}

/// Below this temperature vLLM samples greedily (its `_SAMPLING_EPS`).
const GREEDY_EPSILON: f64 = 1e-5;

fn non_negative(param: &str, v: Option<i64>) -> Result<Option<u32>, ApiError> {
    match v {
        None => Ok(None),
        Some(x) if x < 0 => Err(ApiError::bad_param(
            param,
            format!("{param} must be non-negative, got {x}."),
        )),
        Some(x) => Ok(Some(u32::try_from(x).unwrap_or(u32::MAX))),
    }
}

impl Sampling {
    fn validate(&self, prompt: Prompt, echo_source: Arc<str>) -> Result<Validated, ApiError> {
        // vLLM's `before` validator, on the raw values: `"stream": "false"` is truthy there.
        if lax::truthy(self.stream_options.as_ref()) && !lax::truthy(self.stream.as_ref()) {
            return Err(ApiError::bad_param(
                "stream_options",
                "Stream options can only be defined when `stream=True`. (parameter=stream_options)"
                    .into(),
            ));
        }
        let stream = match &self.stream {
            None => false,
            Some(v) => {
                lax::from_value(v).map_err(|msg| field_error("bool_parsing", "stream", &msg))?
            }
        };
        let include_usage = match &self.stream_options {
            None | Some(serde_json::Value::Null) => false,
            Some(v) => {
                parse_json::<StreamOptions>(v.to_string().as_bytes())
                    .map_err(|e| match e {
                        ApiError::InvalidBody {
                            message,
                            param: Some(p),
                        } => ApiError::InvalidBody {
                            message: message.replacen("'body", "'body.stream_options", 1),
                            param: Some(p.replacen("body", "body.stream_options", 1)),
                        },
                        other => other,
                    })?
                    .include_usage
            }
        };
        let max_tokens = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => Some(("max_completion_tokens", v)),
            (None, Some(v)) => Some(("max_tokens", v)),
            (None, None) => None,
        };
        if let Some((param, v)) = max_tokens
            && v < 1
        {
            return Err(ApiError::bad_param(
                param,
                format!("{param} must be at least 1, got {v}. (parameter={param}, value={v})"),
            ));
        }
        let max_tokens = max_tokens.map(|(_, v)| u32::try_from(v).unwrap_or(u32::MAX));
        match self.n {
            // vLLM's SamplingParams checks (no `param` in its answer).
            Some(n) if n < 1 => {
                return Err(ApiError::BadRequest {
                    message: format!("n must be at least 1, got {n}."),
                    param: None,
                });
            }
            Some(n) if n > 1 && self.temperature.is_some_and(|t| t < GREEDY_EPSILON) => {
                return Err(ApiError::BadRequest {
                    message: format!("n must be 1 when using greedy sampling, got {n}."),
                    param: None,
                });
            }
            Some(n) if n > 1 => {
                return Err(ApiError::bad_param(
                    "n",
                    format!("n must be 1: servesim generates one choice per request, got {n}."),
                ));
            }
            _ => {}
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::bad_param(
                "temperature",
                format!("temperature must be in [0, 2], got {t}."),
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::bad_param(
                "top_p",
                format!("top_p must be in (0, 1], got {p}."),
            ));
        }
        let min_tokens = non_negative("min_tokens", self.min_tokens)?.unwrap_or(0);
        if let Some(max) = max_tokens
            && min_tokens > max
        {
            return Err(ApiError::bad_param(
                "min_tokens",
                format!(
                    "min_tokens must be less than or equal to max_tokens={max}, got {min_tokens}."
                ),
            ));
        }
        let stop = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        Ok(Validated {
            prompt,
            max_tokens,
            ignore_eos: self.ignore_eos,
            min_tokens,
            stream,
            include_usage,
            stop,
            seed: self.seed.map(|s| s as u64),
            echo_source,
        })
    }
}

fn content_text(content: &Option<Content>) -> String {
    match content {
        None => String::new(),
        Some(Content::Text(t)) => t.clone(),
        Some(Content::Parts(parts)) => parts
            .iter()
            .filter(|p| p.kind == "text")
            .filter_map(|p| p.text.as_deref())
            .collect::<Vec<_>>()
            .join("\n"),
    }
}

/// The message contents of a chat, in order.
pub fn chat_contents(messages: &[ChatMessage]) -> Vec<Arc<str>> {
    messages
        .iter()
        .map(|m| Arc::from(content_text(&m.content)))
        .collect()
}

/// The chat roles vLLM's OpenAI server knows.
pub const ROLES: [&str; 6] = [
    "system",
    "developer",
    "user",
    "assistant",
    "tool",
    "function",
];

impl ChatRequest {
    /// Check the request and build the engine's view of it.
    pub fn validate(&self) -> Result<Validated, ApiError> {
        if self.messages.is_empty() {
            return Err(ApiError::BadRequest {
                message: "Cannot apply chat template to an empty conversation. Provide at least one message.".into(),
                param: None,
            });
        }
        // vLLM renders any role name through the chat template (the real peer answers 200 for a
        // role "wizard"); only an empty one is refused.
        for (i, m) in self.messages.iter().enumerate() {
            if m.role.is_empty() {
                return Err(ApiError::bad_param(
                    "messages",
                    format!(
                        "Empty role in messages[{i}]: expected e.g. one of {}.",
                        ROLES.join(", ")
                    ),
                ));
            }
        }
        let contents = chat_contents(&self.messages);
        let echo = contents.last().cloned().unwrap_or_else(|| Arc::from(""));
        self.sampling.validate(Prompt::Chat(contents), echo)
    }
}

impl CompletionRequest {
    /// Check the request and build the engine's view of it; a missing `max_tokens` is 16.
    pub fn validate(&self) -> Result<Validated, ApiError> {
        let no_prompt = || {
            ApiError::bad_param(
                "prompt",
                "Either prompt or prompt_embeds must be provided and non-empty. (parameter=prompt)"
                    .into(),
            )
        };
        let (prompt, echo): (Prompt, Arc<str>) = match self.prompt.as_ref().ok_or_else(no_prompt)? {
            PromptInput::Text(t) if t.is_empty() => return Err(no_prompt()),
            PromptInput::Texts(v) if v.is_empty() => {
                return Err(ApiError::BadRequest {
                    message: "You must pass at least one prompt".into(),
                    param: None,
                });
            }
            PromptInput::Text(t) => {
                let t: Arc<str> = Arc::from(t.as_str());
                (Prompt::Text(Arc::clone(&t)), t)
            }
            PromptInput::Texts(v) if v.len() == 1 => {
                let t: Arc<str> = Arc::from(v[0].as_str());
                (Prompt::Text(Arc::clone(&t)), t)
            }
            PromptInput::Ids(ids) => (Prompt::Ids(ids.as_slice().into()), Arc::from("")),
            PromptInput::IdLists(v) if v.len() == 1 => {
                (Prompt::Ids(v[0].as_slice().into()), Arc::from(""))
            }
            _ => {
                return Err(ApiError::bad_param(
                    "prompt",
                    "servesim takes one prompt per request (batched prompts are not supported)."
                        .into(),
                ));
            }
        };
        if matches!(&prompt, Prompt::Text(t) if t.is_empty())
            || matches!(&prompt, Prompt::Ids(ids) if ids.is_empty())
        {
            return Err(ApiError::BadRequest {
                message: "The decoder prompt cannot be empty".into(),
                param: None,
            });
        }
        let mut v = self.sampling.validate(prompt, echo)?;
        v.max_tokens.get_or_insert(COMPLETIONS_DEFAULT_MAX_TOKENS);
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chat(body: &str) -> Result<Validated, ApiError> {
        ChatRequest::parse(body.as_bytes())?.validate()
    }

    #[test]
    fn missing_messages_names_the_field() {
        let err = chat(r#"{"model":"local"}"#).expect_err("messages are required");
        assert_eq!(err.status(), 400);
        assert!(
            matches!(err, ApiError::InvalidBody { param: Some(p), .. } if p == "body.messages")
        );
    }

    #[test]
    fn limits_are_checked() {
        let base = r#""messages":[{"role":"user","content":"hi"}]"#;
        let err = chat(&format!("{{{base},\"max_tokens\":0}}")).expect_err("max_tokens 0");
        assert!(
            err.to_string()
                .starts_with("max_tokens must be at least 1, got 0.")
        );
        assert!(chat(&format!("{{{base},\"n\":2}}")).is_err());
        assert!(chat(&format!("{{{base},\"max_tokens\":\"x\"}}")).is_err());
        assert!(chat(r#"{"messages":[]}"#).is_err());
        assert!(chat(&format!("{{{base},\"n\":0}}")).is_err());
        let ok = chat(&format!(
            "{{{base},\"max_completion_tokens\":7,\"stop\":\"x\",\"stream\":true,\"stream_options\":{{\"include_usage\":true}},\"n\":1}}"
        ))
        .expect("valid");
        assert_eq!(ok.max_tokens, Some(7));
        assert_eq!(ok.stop, vec!["x".to_string()]);
        assert!(ok.stream && ok.include_usage);
    }

    #[test]
    fn completions_default_to_sixteen_tokens() {
        let v = CompletionRequest::parse(br#"{"prompt":"hello"}"#)
            .expect("parses")
            .validate()
            .expect("valid");
        assert_eq!(v.max_tokens, Some(COMPLETIONS_DEFAULT_MAX_TOKENS));
        let batched = CompletionRequest::parse(br#"{"prompt":["a","b"]}"#).expect("parses");
        assert!(batched.validate().is_err());
    }

    #[test]
    fn empty_roles_and_unknown_models_are_refused() {
        // Real vLLM renders any role name (it answered 200 for "wizard"); an empty one is refused.
        assert!(chat(r#"{"messages":[{"role":"wizard","content":"hi"}]}"#).is_ok());
        let err = chat(r#"{"messages":[{"role":"","content":"hi"}]}"#).expect_err("role");
        assert!(matches!(err, ApiError::BadRequest { param: Some(p), .. } if p == "messages"));
        let err = check_request(
            Endpoint::Chat,
            br#"{"model":"nope","messages":[{"role":"user","content":"hi"}]}"#,
            &["local"],
        )
        .expect_err("model");
        assert_eq!(err.status(), 404);
        assert!(
            check_request(
                Endpoint::Completions,
                br#"{"model":"local","prompt":"hi"}"#,
                &["local"]
            )
            .is_ok()
        );
    }

    #[test]
    fn stream_options_need_a_truthy_stream() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        for opts in [
            r#"{"include_usage":true}"#,
            r#"{"include_usage":false}"#,
            "\"usage\"",
        ] {
            let err = chat(&format!("{{{msgs},\"stream_options\":{opts}}}")).expect_err(opts);
            assert!(
                matches!(&err, ApiError::BadRequest { param: Some(p), .. } if p == "stream_options"),
                "{err:?}"
            );
        }
        // Empty or null options pass; vLLM tests the raw `stream` ("false" is a truthy string).
        for ok in [
            r#""stream_options":{}"#,
            r#""stream_options":null"#,
            r#""stream":"false","stream_options":{"include_usage":true}"#,
        ] {
            let v = chat(&format!("{{{msgs},{ok}}}")).expect(ok);
            assert!(!v.stream, "{ok}");
        }
    }

    #[test]
    fn vllm_messages_for_n_messages_and_prompts() {
        let msgs = r#""messages":[{"role":"user","content":"hi"}]"#;
        let bad = |body: String| match chat(&body) {
            Err(ApiError::BadRequest { message, param }) => (message, param),
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(
            bad(format!("{{{msgs},\"n\":0}}")),
            ("n must be at least 1, got 0.".to_string(), None)
        );
        assert_eq!(
            bad(format!("{{{msgs},\"n\":2,\"temperature\":0}}")),
            (
                "n must be 1 when using greedy sampling, got 2.".to_string(),
                None
            )
        );
        assert_eq!(bad(format!("{{{msgs},\"n\":2}}")).1.as_deref(), Some("n"));
        assert_eq!(bad(r#"{"messages":[]}"#.to_string()).1, None);
        let completion = |body: &str| {
            check_request(Endpoint::Completions, body.as_bytes(), &["local"]).expect_err(body)
        };
        for body in [
            r#"{"model":"local"}"#,
            r#"{"prompt":null}"#,
            r#"{"prompt":""}"#,
        ] {
            assert!(
                matches!(completion(body), ApiError::BadRequest { param: Some(p), .. } if p == "prompt"),
                "{body}"
            );
        }
        for body in [r#"{"prompt":[]}"#, r#"{"prompt":[""]}"#] {
            assert!(
                matches!(completion(body), ApiError::BadRequest { param: None, .. }),
                "{body}"
            );
        }
    }

    mod fuzz {
        //! The stable-toolchain stand-in for `fuzz/` (cargo fuzz needs nightly flags): property
        //! tests that feed arbitrary bytes, and mutated valid requests, to the same entry point.
        use super::super::*;
        use proptest::prelude::*;

        const SEED: &str = r#"{"model":"local","messages":[{"role":"user","content":"hi"}],"max_tokens":8,"stream":true,"stream_options":{"include_usage":true},"stop":["x"],"temperature":0.5,"top_p":0.9,"n":1,"min_tokens":1,"seed":3}"#;

        fn never_panics(body: &[u8]) {
            for endpoint in [Endpoint::Chat, Endpoint::Completions] {
                if let Err(e) = check_request(endpoint, body, &["local"]) {
                    let status = e.status().as_u16();
                    assert!((400..500).contains(&status), "{status}: {e}");
                    assert!(!e.to_string().is_empty());
                }
            }
        }

        fn json_value() -> impl Strategy<Value = serde_json::Value> {
            let leaf = prop_oneof![
                Just(serde_json::Value::Null),
                any::<bool>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from),
                ".{0,12}".prop_map(serde_json::Value::from),
            ];
            leaf.prop_recursive(4, 32, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::from),
                    prop::collection::btree_map(
                        prop_oneof![
                            Just("role".to_string()),
                            Just("content".to_string()),
                            Just("type".to_string()),
                            Just("text".to_string()),
                            "[a-z_]{1,8}"
                        ],
                        inner,
                        0..5
                    )
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(2000))]

            #[test]
            fn arbitrary_bytes(body in prop::collection::vec(any::<u8>(), 0..512)) {
                never_panics(&body);
            }

            #[test]
            fn a_valid_request_cut_or_corrupted(cut in 0..SEED.len(), at in 0..SEED.len(), byte in any::<u8>()) {
                let mut b = SEED.as_bytes().to_vec();
                b[at] = byte;
                never_panics(&b);
                never_panics(&SEED.as_bytes()[..cut]);
            }

            #[test]
            fn any_value_in_any_field(
                field in prop_oneof![
                    Just("model"), Just("messages"), Just("prompt"), Just("max_tokens"),
                    Just("max_completion_tokens"), Just("stream"), Just("stream_options"),
                    Just("n"), Just("temperature"), Just("top_p"), Just("seed"), Just("stop"),
                    Just("ignore_eos"), Just("min_tokens")
                ],
                value in json_value(),
            ) {
                let mut v: serde_json::Value = serde_json::from_str(SEED).expect("seed");
                v[field] = value;
                never_panics(v.to_string().as_bytes());
            }
        }
    }
}
