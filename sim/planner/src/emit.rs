//! The winning deployment as files: the `vllm serve` command line, a Kubernetes Deployment and
//! Service of real vLLM on GPUs with the chosen settings and replica count (`gpu/`), and a
//! kustomize overlay that rehearses the same fleet with servesim's image and no GPU (`servesim/`),
//! changing only what deploy/kubernetes/'s drop-in changes: the image, the GPU request and the
//! simulated card.

use crate::plan::{Plan, Row};
use crate::search::PlanInputs;

/// A file to write: its path under the emit folder and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmittedFile {
    pub path: String,
    pub text: String,
}

/// `vllm serve`'s arguments for a row (model id first), as vLLM spells them.
pub fn serve_args(inputs: &PlanInputs, row: &Row, model_id: &str) -> Vec<String> {
    let mut args = vec![
        model_id.to_string(),
        "--tensor-parallel-size".into(),
        row.tensor_parallel_size.to_string(),
        "--max-num-seqs".into(),
        row.max_num_seqs.to_string(),
        "--max-num-batched-tokens".into(),
        row.max_num_batched_tokens.to_string(),
        "--gpu-memory-utilization".into(),
        row.gpu_memory_utilization.to_string(),
    ];
    if let Some(q) = row.quantization {
        args.extend(["--quantization".into(), q.as_str().into()]);
    }
    if row.kv_cache_dtype != servesim_models::KvCacheDtype::Auto {
        args.extend([
            "--kv-cache-dtype".into(),
            row.kv_cache_dtype.as_str().into(),
        ]);
    }
    if let Some(len) = inputs.grid.max_model_len {
        args.extend(["--max-model-len".into(), len.to_string()]);
    }
    args.extend(["--port".into(), "8000".into()]);
    args
}

/// The winner's replica as a servesim profile file, so that `servesim validate --profile` simulates
/// exactly the replica the real card runs (the same GPU, model, parallelism and engine settings).
pub fn profile_toml(inputs: &PlanInputs, row: &Row) -> String {
    let mut engine = format!(
        "tensor_parallel_size = {}\nmax_num_seqs = {}\nmax_num_batched_tokens = {}\n\
         gpu_memory_utilization = {:?}\n",
        row.tensor_parallel_size,
        row.max_num_seqs,
        row.max_num_batched_tokens,
        row.gpu_memory_utilization
    );
    if let Some(q) = row.quantization {
        engine.push_str(&format!("quantization = {:?}\n", q.as_str()));
    }
    if row.kv_cache_dtype != servesim_models::KvCacheDtype::Auto {
        engine.push_str(&format!(
            "kv_cache_dtype = {:?}\n",
            row.kv_cache_dtype.as_str()
        ));
    }
    if let Some(len) = inputs.grid.max_model_len {
        engine.push_str(&format!("max_model_len = {len}\n"));
    }
    format!(
        "# servesim plan's pick: one replica of the planned fleet ({replicas} of them), for\n\
         # `servesim validate --profile` and `servesim serve --profile`.\n\
         name = {name:?}\ndescription = {description:?}\ngpu = {gpu:?}\nmodel = {model:?}\n\n\
         [engine]\n{engine}",
        replicas = row.replicas,
        name = format!("plan-{}-{}", row.gpu, inputs.model),
        description = format!(
            "{} + {} (TP {}), the planned engine settings",
            row.gpu_display, inputs.model, row.tensor_parallel_size
        ),
        gpu = row.gpu,
        model = inputs.model,
    )
}

/// Kubernetes label value of a model id (`Qwen/Qwen2.5-7B-Instruct` -> `qwen2-5-7b-instruct`).
fn label(model_id: &str) -> String {
    let tail = model_id.rsplit('/').next().unwrap_or(model_id);
    let s: String = tail
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').chars().take(63).collect()
}

/// The files for the plan's rank-1 row; `None` when no fleet serves the peak.
pub fn files(plan: &Plan) -> Option<Vec<EmittedFile>> {
    let row = plan.rows.first()?;
    let model_id = row.model_id.as_str();
    let i = &plan.inputs;
    let args = serve_args(i, row, model_id);
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect();
    let why = format!(
        "servesim plan: rank 1 of {} ({} view): {} × {} at TP{} for {:.3} req/s of {} within {}; ${:.2}/h",
        plan.rows.len(),
        plan.view.as_str(),
        row.replicas,
        row.gpu,
        row.tensor_parallel_size,
        i.peak_rate,
        i.traffic.name,
        i.slo,
        row.usd_per_hour
    );
    let serve = format!(
        "#!/bin/sh\n# {why}\n# One replica's command: the fleet is {} of them, {} GPU(s) each.\nexec vllm serve {}\n",
        row.replicas,
        row.tensor_parallel_size,
        quoted.join(" ")
    );
    let name = "vllm";
    let model_label = label(model_id);
    let yaml_args: String = args
        .iter()
        .map(|a| format!("            - {a:?}\n"))
        .collect();
    let deployment = format!(
        "# {why}
# Real vLLM on GPUs: {replicas} replicas, each {tp} × {gpu_display} ({gpu}).
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels:
      app.kubernetes.io/name: {name}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: {name}
        llm-d.ai/inferenceServing: \"true\"
        llm-d.ai/model: {model_label}
        llm-d.ai/role: decode
      annotations:
        prometheus.io/scrape: \"true\"
        prometheus.io/port: \"8000\"
        prometheus.io/path: /metrics
    spec:
      containers:
        - name: vllm
          image: vllm/vllm-openai:latest
          args:
{yaml_args}          ports:
            - name: http
              containerPort: 8000
              protocol: TCP
          readinessProbe:
            httpGet:
              path: /health
              port: http
            periodSeconds: 5
            failureThreshold: 3
          livenessProbe:
            httpGet:
              path: /health
              port: http
            initialDelaySeconds: 600
            periodSeconds: 10
            failureThreshold: 3
          resources:
            requests:
              nvidia.com/gpu: \"{tp}\"
            limits:
              nvidia.com/gpu: \"{tp}\"
",
        replicas = row.replicas,
        tp = row.tensor_parallel_size,
        gpu = row.gpu,
        gpu_display = row.gpu_display,
    );
    let service = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: {name}
  labels:
    app.kubernetes.io/name: {name}
spec:
  selector:
    app.kubernetes.io/name: {name}
  ports:
    - name: http
      port: 8000
      targetPort: http
      protocol: TCP
"
    );
    let gpu_kustomization =
        "apiVersion: kustomize.config.k8s.io/v1beta1\nkind: Kustomization\nresources:\n  - deployment.yaml\n  - service.yaml\n".to_string();
    let rehearsal = format!(
        "# The same fleet rehearsed without GPUs: servesim's image simulates {gpu} with vLLM's
# arguments unchanged (the drop-in of deploy/kubernetes/). `kubectl apply -k` this folder.
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../gpu
patches:
  - target:
      kind: Deployment
      name: {name}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/image
        value: localhost/servesim:dev
      - op: add
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: IfNotPresent
      - op: add
        path: /spec/template/spec/containers/0/env
        value:
          - name: SERVESIM_GPU
            value: {gpu}
      - op: replace
        path: /spec/template/spec/containers/0/resources
        value:
          requests:
            cpu: 250m
            memory: 64Mi
          limits:
            cpu: \"2\"
            memory: 512Mi
      - op: replace
        path: /spec/template/spec/containers/0/livenessProbe/initialDelaySeconds
        value: 0
",
        gpu = row.gpu
    );
    // The check on the real card: the drill suite against the replica started by vllm-serve.sh and
    // against the same replica simulated, compared, with the claims ledger.
    let validate = format!(
        "#!/bin/sh\n# {why}\n# Check the pick on the real card: start one replica with vllm-serve.sh on the planned GPU,\n\
         # then run this with its URL (default http://127.0.0.1:8000) and an output folder.\n\
         exec servesim validate --real \"${{1:-http://127.0.0.1:8000}}\" --model {model_id} \\\n  \
         --profile \"$(dirname \"$0\")/profile.toml\" --out \"${{2:-validate-out}}\"\n"
    );
    Some(vec![
        EmittedFile {
            path: "vllm-serve.sh".into(),
            text: serve,
        },
        EmittedFile {
            path: "profile.toml".into(),
            text: profile_toml(i, row),
        },
        EmittedFile {
            path: "validate.sh".into(),
            text: validate,
        },
        EmittedFile {
            path: "gpu/deployment.yaml".into(),
            text: deployment,
        },
        EmittedFile {
            path: "gpu/service.yaml".into(),
            text: service,
        },
        EmittedFile {
            path: "gpu/kustomization.yaml".into(),
            text: gpu_kustomization,
        },
        EmittedFile {
            path: "servesim/kustomization.yaml".into(),
            text: rehearsal,
        },
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plan inputs for `model` with max_model_len 16384; the rest does not reach the emitted files.
    fn inputs(model: &str) -> PlanInputs {
        serde_json::from_value(serde_json::json!({
            "model": model, "grid": {"gpus": [], "tensor_parallel": [], "max_num_seqs": [],
            "max_num_batched_tokens": [], "gpu_memory_utilization": [], "max_model_len": 16384},
            "traffic": {"name": "t", "spec": null, "mean_input_tokens": 1.0, "mean_output_tokens": 1.0},
            "slo": "ttft_p95=1", "peak_rate": 1.0, "rate_source": "", "headroom": 1.2,
            "tolerance": 0.05, "requests": 10, "probe_seconds": 1.0, "seed": 0,
            "bisection": {"start_rate": 1.0, "precision": 1.02, "max_runs": 24, "min_rate": 0.001,
            "max_rate": 10000.0}, "router": "round-robin", "prices": {"gpu": {}}
        }))
        .expect("inputs")
    }

    #[test]
    fn fp8_weights_and_kv_cache_are_on_the_serve_line() {
        let mut row = crate::plan::tests::row(0, 1.0, 0.1, 1.0, crate::SloStatus::Pass);
        row.quantization = Some(servesim_models::Quantization::Fp8);
        row.kv_cache_dtype = servesim_models::KvCacheDtype::Fp8;
        let inputs = inputs("m");
        let args = serve_args(&inputs, &row, "org/m").join(" ");
        assert_eq!(
            args,
            "org/m --tensor-parallel-size 1 --max-num-seqs 1 --max-num-batched-tokens 1 \
             --gpu-memory-utilization 0.9 --quantization fp8 --kv-cache-dtype fp8 \
             --max-model-len 16384 --port 8000"
        );
    }

    #[test]
    fn the_emitted_profile_is_the_planned_replica() {
        let mut row = crate::plan::tests::row(0, 1.0, 0.1, 1.0, crate::SloStatus::Pass);
        row.gpu = "h100-sxm".into();
        row.tensor_parallel_size = 2;
        row.max_num_seqs = 64;
        row.max_num_batched_tokens = 8192;
        row.gpu_memory_utilization = 1.0;
        row.quantization = Some(servesim_models::Quantization::Fp8);
        row.kv_cache_dtype = servesim_models::KvCacheDtype::Fp8;
        let inputs = inputs("qwen2.5-7b-instruct");
        let text = profile_toml(&inputs, &row);
        let emitted = servesim_models::Profile::parse_toml(&text, "profile.toml").expect(&text);
        let planned = crate::search::Candidate {
            index: 0,
            gpu: "h100-sxm".into(),
            tensor_parallel_size: 2,
            max_num_seqs: 64,
            max_num_batched_tokens: 8192,
            gpu_memory_utilization: 1.0,
            quantization: Some(servesim_models::Quantization::Fp8),
            kv_cache_dtype: servesim_models::KvCacheDtype::Fp8,
        }
        .profile("qwen2.5-7b-instruct", Some(16384))
        .expect("servable");
        assert_eq!(emitted.engine, planned.engine, "{text}");
        assert_eq!(emitted.gpu, planned.gpu);
        assert_eq!(
            emitted.derive().expect("derives"),
            planned.derive().expect("derives")
        );
    }

    #[test]
    fn model_ids_become_label_values() {
        assert_eq!(label("Qwen/Qwen2.5-7B-Instruct"), "qwen2-5-7b-instruct");
        assert_eq!(
            label("meta-llama/Llama-3.1-70B-Instruct"),
            "llama-3-1-70b-instruct"
        );
    }
}
