//! `sse-progress run`: starts a job through the REST API, then watches it.

use reqwest::Url;
use serde_json::{Map, Value};

use super::watch::{watch, Outcome};

/// Reads `KEY=VALUE`; VALUE is JSON when it parses as JSON, else a string.
pub fn parse_param(text: &str) -> Result<(String, Value), String> {
    let (key, value) = text.split_once('=').ok_or_else(|| format!("{text:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{text:?} has no key before the ="));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

/// Starts `kind` with `params` on `server` and follows it to its end.
pub async fn run(server: &str, kind: &str, params: Vec<(String, Value)>) -> Outcome {
    let Ok(base) = Url::parse(server) else {
        eprintln!("--server {server:?} is not a URL");
        return Outcome::Unfollowable;
    };
    let Ok(start) = base.join("/api/jobs") else {
        return Outcome::Unfollowable;
    };
    let body = serde_json::json!({"kind": kind, "params": params.into_iter().collect::<Map<_, _>>()});
    let response = match reqwest::Client::new().post(start).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot reach {server}: {e}");
            return Outcome::Unfollowable;
        }
    };
    let status = response.status();
    let answer: Value = response.json().await.unwrap_or(Value::Null);
    if status != reqwest::StatusCode::ACCEPTED {
        let detail = answer["detail"].as_str().unwrap_or("the server refused the job");
        eprintln!("{detail}");
        return Outcome::Unfollowable;
    }
    let events = answer["links"]
        .as_array()
        .and_then(|links| links.iter().find(|l| l["rel"] == "events"))
        .and_then(|l| l["href"].as_str())
        .and_then(|href| base.join(href).ok());
    let Some(events) = events else {
        eprintln!("the server's answer has no events link");
        return Outcome::Unfollowable;
    };
    let token = answer["owner_token"].as_str().map(str::to_owned);
    eprintln!("Started {kind} job {}", answer["id"].as_str().unwrap_or("?"));
    if let Some(token) = &token {
        eprintln!("To watch it again: sse-progress watch {} --token {token}", answer["id"].as_str().unwrap_or("?"));
    }
    watch(events, token).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_json_when_they_can_be() {
        assert_eq!(parse_param("steps=5"), Ok(("steps".into(), Value::from(5))));
        assert_eq!(parse_param("name=abc"), Ok(("name".into(), Value::from("abc"))));
        assert!(parse_param("oops").unwrap_err().contains("is not KEY=VALUE"));
        assert!(parse_param("=3").is_err());
    }
}
