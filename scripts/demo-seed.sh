#!/usr/bin/env bash
# Seeds the demo workloads of `scripts/run.sh --demo` on the local test cluster: realistic owners,
# access modes and data in every volume, so the inventory and backups have something to show.
#
#   <prefix>shop       StatefulSet postgres (volumeClaimTemplate → PVC pgdata-postgres-0, ~22 MiB of
#                      table files, WAL segments and a CSV export), Deployment storefront (2 replicas
#                      sharing the ReadWriteMany PVC uploads, ~12 MiB of images), Deployment ledger
#                      using the ReadWriteOncePod PVC ledger-journal (its backup is refused: in use)
#   <prefix>analytics  CronJob nightly-report writing CSV reports into PVC reports (one run started
#                      now), PVC old-exports: bound, full of old exports, and used by no pod (orphaned)
#
# Idempotent: objects are applied, data is written only into empty volumes, the first report job and
# the exporter pod run only once; a second run changes nothing. Never touches another cluster: it
# uses the local test cluster only (scripts/lib.sh use_test_cluster; NKVM_TEST_KUBECONFIG to use one
# started from another checkout).
# Environment: NKVM_DEMO_PREFIX (default "demo-") names the namespaces.
# Usage: scripts/demo-seed.sh
set -euo pipefail
NKVM_SCRIPT=demo-seed
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
source "$NKVM_REPO/scripts/manifests.sh"
use_test_cluster
require deb:python3
prefix="${NKVM_DEMO_PREFIX:-demo-}"
shop="${prefix}shop"
analytics="${prefix}analytics"
started=$SECONDS

# The long-running containers write their data only while the volume is still empty (no .seeded
# marker), then idle.
postgres=$(cat <<'SH'
d=/var/lib/postgresql/data
if [ ! -f $d/.seeded ]; then
  mkdir -p $d/base/16384 $d/global $d/pg_wal
  echo 16 > $d/PG_VERSION
  for i in $(seq 1 40); do head -c 262144 /dev/urandom > $d/base/16384/$((16400 + i)); done
  for i in 1 2 3; do head -c 4194304 /dev/urandom > $d/pg_wal/00000001000000000000000$i; done
  seq 1 20000 | awk '{printf "%d,customer-%04d,%d.%02d,2026-11-%02d\n", $1, $1 % 977, $1 % 500, $1 % 100, $1 % 28 + 1}' > $d/orders.csv
  printf 'max_connections = 100\nshared_buffers = 128MB\n' > $d/postgresql.conf
  touch $d/.seeded
fi
exec sleep 2147483647
SH
)
storefront=$(cat <<'SH'
if [ ! -f /uploads/.seeded ]; then
  mkdir -p /uploads/products /uploads/avatars
  for i in $(seq 1 24); do head -c 409600 /dev/urandom > /uploads/products/sku-$((1000 + i)).jpg; done
  for i in $(seq 1 30); do head -c 81920 /dev/urandom > /uploads/avatars/user-$i.png; done
  touch /uploads/.seeded
fi
exec sleep 2147483647
SH
)
ledger=$(cat <<'SH'
if [ ! -f /journal/.seeded ]; then
  seq 1 5000 | awk '{printf "%08d debit=%d credit=%d\n", $1, $1 * 7 % 1000, $1 * 13 % 1000}' > /journal/journal-0001.log
  touch /journal/.seeded
fi
exec sleep 2147483647
SH
)
report=$(cat <<'SH'
f=/reports/report-$(date -u +%Y%m%dT%H%M%SZ).csv
echo "region,orders,revenue" > $f
awk 'BEGIN { srand(); split("north south east west", r, " ");
  for (i = 1; i <= 4; i++) printf "%s,%d,%d\n", r[i], 100 + int(rand() * 900), 10000 + int(rand() * 90000) }' >> $f
SH
)
exporter=$(cat <<'SH'
for m in 01 02 03 04 05 06; do
  seq 1 3000 | awk -v m=$m '{printf "2026-%s-%02d,%d,%d\n", m, $1 % 28 + 1, $1, $1 * 31 % 997}' > /exports/export-2026-$m.csv
  head -c 524288 /dev/urandom > /exports/export-2026-$m.bin
done
SH
)

for ns in "$shop" "$analytics"; do
  k apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: $ns, labels: {app.kubernetes.io/part-of: nkvm-demo}}
YAML
done

k -n "$shop" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: postgres}
spec: {clusterIP: None, selector: {app: postgres}, ports: [{port: 5432}]}
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: postgres}
spec:
  serviceName: postgres
  replicas: 1
  selector: {matchLabels: {app: postgres}}
  template:
    metadata: {labels: {app: postgres}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      $(container postgres "$postgres" pgdata:/var/lib/postgresql/data)
  volumeClaimTemplates:
  - metadata: {name: pgdata}
    spec: {accessModes: [ReadWriteOnce], resources: {requests: {storage: 2Gi}}}
---
$(claim uploads ReadWriteMany)
$(REPLICAS=2 deployment storefront "$storefront" uploads:/uploads:data)
$(claim ledger-journal ReadWriteOncePod)
$(STRATEGY=Recreate deployment ledger "$ledger" ledger-journal:/journal:data)
YAML

k -n "$analytics" apply -f - >/dev/null <<YAML
$(claim reports ReadWriteOnce)
apiVersion: batch/v1
kind: CronJob
metadata: {name: nightly-report}
spec:
  schedule: "*/30 * * * *"
  concurrencyPolicy: Forbid
  successfulJobsHistoryLimit: 2
  failedJobsHistoryLimit: 1
  jobTemplate:
    spec:
      backoffLimit: 2
      template:
        spec:
          restartPolicy: Never
          terminationGracePeriodSeconds: 1
          containers:
          $(container report "$report" reports:/reports)
          $(volumes reports:/reports)
---
$(claim old-exports ReadWriteOnce)
YAML

# The first report now (the CronJob owns it), instead of waiting for the schedule.
if [[ -z "$(k -n "$analytics" get jobs -o name)" ]]; then
  k -n "$analytics" create job first-report --from=cronjob/nightly-report >/dev/null
fi

# old-exports: written once by a pod that is then deleted, so the claim stays Bound with data and no
# consumer (what a removed workload leaves behind).
if [[ "$(k -n "$analytics" get pvc old-exports -o jsonpath='{.status.phase}')" != Bound ]]; then
  k -n "$analytics" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Pod
metadata: {name: exporter}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  $(container export "$exporter" old-exports:/exports:exports)
  $(volumes old-exports:/exports:exports)
YAML
  k -n "$analytics" wait pod/exporter --for=jsonpath='{.status.phase}'=Succeeded --timeout=180s >/dev/null ||
    die "the exporter pod that fills old-exports did not finish (kubectl -n $analytics describe pod exporter)"
  k -n "$analytics" delete pod exporter --wait=true >/dev/null
fi

log "waiting for the demo workloads"
for workload in statefulset/postgres deployment/storefront deployment/ledger; do
  k -n "$shop" rollout status "$workload" --timeout=180s >/dev/null ||
    die "$workload in $shop is not ready (kubectl -n $shop describe $workload)"
done
k -n "$analytics" wait job --all --for=condition=Complete --timeout=180s >/dev/null ||
  die "the report job in $analytics did not complete (kubectl -n $analytics describe jobs)"
for claim in "$shop/pgdata-postgres-0" "$shop/uploads" "$shop/ledger-journal" "$analytics/reports" "$analytics/old-exports"; do
  k -n "${claim%%/*}" wait "pvc/${claim#*/}" --for=jsonpath='{.status.phase}'=Bound --timeout=60s >/dev/null ||
    die "PVC $claim is not Bound"
done
log "demo workloads ready in $((SECONDS - started)) s: namespaces $shop and $analytics"
