#!/usr/bin/env bash
# Make a private CA and scheduler / worker / client certificates for Dask's TLS (tls:// addresses).
#
#   deploy/tls/make-certs.sh OUTDIR [EXTRA_SAN ...]
#
# EXTRA_SAN entries are added to the scheduler and worker certificates' subjectAltName, e.g.
#   DNS:scheduler.example.org  IP:10.0.0.5  DNS:*.cluster.local
# (distributed checks that the peer's chain ends at ca.pem, not the host name, but correct SANs cost nothing.)
#
# Writes into OUTDIR:
#   ca.pem, ca-key.pem                    the CA (keep ca-key.pem OFF the cluster; it signs new certs)
#   {scheduler,worker,client}.pem         certificates signed by the CA
#   {scheduler,worker,client}-key.pem     their private keys (mode 600)
#   dask-tls-{scheduler,worker,client}.yaml   distributed config for DASK_CONFIG (paths under $MPF_TLS_DIR,
#                                          default OUTDIR as given; set MPF_TLS_DIR=/etc/dask/tls when the
#                                          files will be mounted at another path inside containers)
# Nothing is ever fetched; only the openssl CLI is needed. Existing files in OUTDIR are overwritten.
set -euo pipefail

if [[ $# -lt 1 || "$1" == "-h" || "$1" == "--help" ]]; then
    sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
    exit $(( $# < 1 ? 2 : 0 ))
fi
command -v openssl >/dev/null || { echo "make-certs.sh: the openssl CLI is required" >&2; exit 1; }

OUT=$1; shift
DAYS=${MPF_TLS_DAYS:-365}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
CFG_DIR=${MPF_TLS_DIR:-$OUT}
umask 077

SAN="DNS:localhost,DNS:scheduler,DNS:worker,IP:127.0.0.1,IP:::1"
for extra in "$@"; do SAN="$SAN,$extra"; done

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes -days "$DAYS" \
    -subj "/CN=mpfpipe-dask-ca" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$OUT/ca-key.pem" -out "$OUT/ca.pem" 2>/dev/null

for role in scheduler worker client; do
    ext="$OUT/.$role.ext"
    {
        echo "basicConstraints=critical,CA:FALSE"
        echo "keyUsage=critical,digitalSignature"
        # Every Dask process is both a TLS server and a TLS client (workers talk to each other and the
        # scheduler connects back to workers), so all three certificates carry both usages.
        echo "extendedKeyUsage=serverAuth,clientAuth"
        if [[ $role != client ]]; then echo "subjectAltName=$SAN"; fi
    } > "$ext"
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -sha256 -nodes -subj "/CN=mpfpipe-dask-$role" \
        -keyout "$OUT/$role-key.pem" -out "$OUT/.$role.csr" 2>/dev/null
    openssl x509 -req -sha256 -days "$DAYS" -in "$OUT/.$role.csr" \
        -CA "$OUT/ca.pem" -CAkey "$OUT/ca-key.pem" -CAcreateserial \
        -extfile "$ext" -out "$OUT/$role.pem" 2>/dev/null
    openssl verify -CAfile "$OUT/ca.pem" "$OUT/$role.pem" >/dev/null
    rm -f "$ext" "$OUT/.$role.csr"

    cat > "$OUT/dask-tls-$role.yaml" <<YAML
# distributed config for a Dask $role over TLS; use with DASK_CONFIG=<this file> (or copy into ~/.config/dask/).
distributed:
  comm:
    require-encryption: true
    default-scheme: tls
    tls:
      ca-file: $CFG_DIR/ca.pem
      $role:
        cert: $CFG_DIR/$role.pem
        key: $CFG_DIR/$role-key.pem
YAML
done
rm -f "$OUT/ca.srl"
chmod 644 "$OUT"/ca.pem "$OUT"/scheduler.pem "$OUT"/worker.pem "$OUT"/client.pem "$OUT"/dask-tls-*.yaml
chmod 600 "$OUT"/*-key.pem
echo "certificates written to $OUT (CA valid $DAYS days; keep ca-key.pem off the cluster)"
