#!/usr/bin/env bash
# Adds replica N to the Kubernetes base: writes replica-N.yaml (replica-0.yaml with the
# replica's number changed in its names, labels and the workers' --replica) next to this
# script and lists it in kustomization.yaml. The cluster file is yours to change: raise
# parallel.replicas in config.yaml (and, for gpu/, list the new workers in
# gpu/config.yaml), then apply and `flover reload` (docs/deploy.md, "Scaling replicas").
# Usage: deploy/kubernetes/add-replica.sh N     (N >= 1)
set -euo pipefail
n=${1:-}
if ! [[ $n =~ ^[1-9][0-9]*$ ]]; then
  echo "usage: $0 N   (the new replica's number, 1 or more)" >&2
  exit 2
fi
cd "$(dirname "$0")"
if [ -e "replica-$n.yaml" ]; then
  echo "add-replica: replica-$n.yaml exists already" >&2
  exit 1
fi
sed -e "s/replica-0/replica-$n/g" -e "s/replica: \"0\"/replica: \"$n\"/g" -e "s/--replica 0\$/--replica $n/" \
  replica-0.yaml >"replica-$n.tmp"
if ! grep -q -- "--replica $n\$" "replica-$n.tmp"; then
  rm -f "replica-$n.tmp"
  echo "add-replica: replica-0.yaml no longer has the '--replica 0' line this script rewrites" >&2
  exit 1
fi
mv "replica-$n.tmp" "replica-$n.yaml"
# After the last replica-*.yaml of the resources list.
awk -v new="  - replica-$n.yaml" '
  { lines[NR] = $0 } /^  - replica-[0-9]+\.yaml$/ { last = NR }
  END { for (i = 1; i <= NR; i++) { print lines[i]; if (i == last) print new } }' \
  kustomization.yaml >kustomization.yaml.tmp
mv kustomization.yaml.tmp kustomization.yaml
echo "add-replica: wrote replica-$n.yaml and listed it in kustomization.yaml."
echo "Now raise parallel.replicas in config.yaml (and list replica $n's workers in gpu/config.yaml"
echo "for GPU workers), kubectl apply -k, and once the coordinator's pod sees the new cluster file,"
echo "flover reload (or: kubectl exec deploy/flover-coordinator -- sh -c 'kill -HUP 1')."
