#!/usr/bin/env bash
# Render every kustomize overlay in deploy/kubernetes/ and validate the output offline against
# Kubernetes' schemas (kubernetes-validate from PyPI, strict: unknown fields fail), then check the
# properties the manifests promise. Run by .ci/run's `kubernetes` stage; by hand:
#   bash deploy/check-kubernetes.sh [OUT_DIR]        (default target/kubernetes)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-target/kubernetes}"
mkdir -p "$OUT"
VENV="$OUT/venv"
[ -x "$VENV/bin/kubernetes-validate" ] || {
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check 'kubernetes-validate>=1.31'
}
# The validator must refuse a bad manifest, or its passes mean nothing.
printf 'apiVersion: v1\nkind: Service\nmetadata:\n  name: x\nspec:\n  portz: []\n' > "$OUT/bad.yaml"
if "$VENV/bin/kubernetes-validate" --strict --quiet "$OUT/bad.yaml" >/dev/null 2>&1; then
  echo "kubernetes-validate accepted a Service with an unknown field" >&2; exit 1
fi
for overlay in deploy/kubernetes/overlays/*/; do
  name=$(basename "$overlay")
  kubectl kustomize "$overlay" > "$OUT/$name.yaml"
  "$VENV/bin/kubernetes-validate" --strict --quiet "$OUT/$name.yaml"
  python3 - "$OUT/$name.yaml" "$name" <<'PY'
import sys, re
text = open(sys.argv[1]).read()
name = sys.argv[2]
docs = [d for d in text.split("\n---\n") if d.strip()]
kinds = [re.search(r"^kind: (\S+)", d, re.M).group(1) for d in docs]
def need(cond, what):
    if not cond:
        sys.exit(f"{name}: {what}")
pods = [d for d in docs if re.search(r"^kind: (Deployment|StatefulSet)$", d, re.M)]
need(len(pods) == 1, "one Deployment or StatefulSet")
pod = pods[0]
for must in ['llm-d.ai/inferenceServing: "true"', "llm-d.ai/model:", 'prometheus.io/scrape: "true"',
             "path: /health", "runAsNonRoot: true", "readOnlyRootFilesystem: true"]:
    need(must in pod, f"the server pod lacks {must}")
need("readinessProbe" in pod and "livenessProbe" in pod, "readiness and liveness probes")
need("nvidia.com/gpu" not in text, "no GPU is requested")
need(re.search(r"requests:\s*\n\s*cpu: .*\n\s*memory: ", pod), "CPU and memory requests")
need("Job" in kinds and "servesim\n" in text and "- bench" in text, "the bench Job")
if name == "fleet":
    replicas = int(re.search(r"replicas: (\d+)", pod).group(1))
    need(re.search(r"clusterIP: None", text), "a headless Service")
    for i in range(replicas):
        need(f"statefulset.kubernetes.io/pod-name: servesim-{i}" in text, f"a Service for replica {i}")
print(f"{name}: {len(docs)} objects ({', '.join(sorted(kinds))}) valid")
PY
done
# The planner's Indexed Job (deploy/kubernetes/plan): shards and the merge step.
kubectl kustomize deploy/kubernetes/plan > "$OUT/plan.yaml"
"$VENV/bin/kubernetes-validate" --strict --quiet "$OUT/plan.yaml"
python3 - "$OUT/plan.yaml" <<'PY'
import sys, re
text = open(sys.argv[1]).read()
docs = [d for d in text.split("\n---\n") if d.strip()]
def need(cond, what):
    if not cond:
        sys.exit(f"plan: {what}")
jobs = [d for d in docs if re.search(r"^kind: Job$", d, re.M)]
need(len(jobs) == 2, "two Jobs (shards and merge)")
shards = [j for j in jobs if "completionMode: Indexed" in j]
need(len(shards) == 1, "one Indexed Job")
shard = shards[0]
completions = int(re.search(r"^  completions: (\d+)$", shard, re.M).group(1))
parallelism = int(re.search(r"^  parallelism: (\d+)$", shard, re.M).group(1))
n = int(re.search(r"- \$\(SHARD_INDEX\)/(\d+)", shard).group(1))
need(completions == parallelism == n, f"completions {completions}, parallelism {parallelism} and --shard i/{n} agree")
need("batch.kubernetes.io/job-completion-index" in shard, "the shard index from the pod's completion index")
need("- plan" in shard and "--out" in shard, "each pod runs `servesim plan --shard` into a file")
merge = [j for j in jobs if j is not shard][0]
need("- merge" in merge and "--wait" in merge, "the merge Job waits for the shards and runs `plan merge`")
for j in jobs:
    need("runAsNonRoot: true" in j and "readOnlyRootFilesystem: true" in j, "non-root, read-only pods")
    need("claimName: servesim-plan-results" in j, "both Jobs mount the results claim")
    need("nvidia.com/gpu" not in j, "no GPU is requested")
need(re.search(r"^kind: PersistentVolumeClaim$", text, re.M), "the results claim")
print(f"plan: {len(docs)} objects valid; {n} shards and a merge step")
PY
