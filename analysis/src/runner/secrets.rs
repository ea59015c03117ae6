//! Argument values at measurement time: literal values, and Secret values read just before
//! measuring (never stored, never logged; their text is masked in measurement messages).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use crate::api::AnalysisRunSpec;
use crate::args::ArgValues;

pub(super) enum SecretError {
    /// The run cannot resolve its args (missing Secret or key): the run ends in Error.
    Missing(String),
    /// The API failed: the pass is retried.
    Api(kube::Error),
}

/// Every arg's value, and the list of values that came from Secrets.
pub(super) async fn arg_values(
    client: &kube::Client,
    namespace: &str,
    spec: &AnalysisRunSpec,
) -> Result<(ArgValues, Vec<String>), SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let mut fetched: BTreeMap<String, Secret> = BTreeMap::new();
    let mut values = ArgValues::new();
    let mut secret_values = Vec::new();
    for arg in spec.args.iter().flatten() {
        if let Some(value) = &arg.value {
            values.insert(arg.name.clone(), value.clone());
            continue;
        }
        let Some(reference) = arg
            .value_from
            .as_ref()
            .and_then(|v| v.secret_key_ref.as_ref())
        else {
            return Err(SecretError::Missing(format!(
                "argument {:?} has no value and no secretKeyRef",
                arg.name
            )));
        };
        if !fetched.contains_key(&reference.name) {
            match api.get_opt(&reference.name).await {
                Ok(Some(secret)) => {
                    fetched.insert(reference.name.clone(), secret);
                }
                Ok(None) => {
                    return Err(SecretError::Missing(format!(
                        "secret '{}' (argument {:?}) does not exist in namespace '{namespace}'",
                        reference.name, arg.name
                    )));
                }
                Err(e) => return Err(SecretError::Api(e)),
            }
        }
        let secret = &fetched[&reference.name];
        let bytes = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&reference.key))
            .map(|b| b.0.clone())
            .or_else(|| {
                secret
                    .string_data
                    .as_ref()
                    .and_then(|d| d.get(&reference.key))
                    .map(|s| s.clone().into_bytes())
            })
            .ok_or_else(|| {
                SecretError::Missing(format!(
                    "key '{}' does not exist in secret '{}' (argument {:?})",
                    reference.key, reference.name, arg.name
                ))
            })?;
        let value = String::from_utf8_lossy(&bytes).into_owned();
        secret_values.push(value.clone());
        values.insert(arg.name.clone(), value);
    }
    Ok((values, secret_values))
}
