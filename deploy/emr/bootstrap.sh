#!/bin/bash
# EMR bootstrap action: runs on every node of a shopstream cluster before
# Flink starts (see beam_pipelines/cli/deploy_emr.py, which uploads this file).
#
#   bootstrap.sh s3://BUCKET/shopstream --pii-salt-secret ID [--kafka-secret ID]
#
# Installs into /opt/shopstream:
#   venv/            Python 3.11 with the shopstream wheel (Beam 2.62 and the rest)
#   runner_configs/  the runner YAMLs the EMR steps name
#   boot             Beam's SDK harness launcher (the PROCESS environment's command),
#                    copied out of Beam's SDK image and wrapped to use venv's Python
#   beam-runners-flink-1.19-job-server-2.62.0.jar   (primary node only)
#   environment      settings every worker's Python needs but the job graph must
#                    not carry, from AWS Secrets Manager: SHOPSTREAM_PII_SALT (the
#                    secret string of --pii-salt-secret) and, with --kafka-secret
#                    (an Amazon MSK SCRAM user), the Kafka reader's SASL settings;
#                    readable by this user only, sourced by boot and by the steps
#
# The tests source this file and call write_boot_wrapper to run a local Flink
# job with the PROCESS harness exactly as the nodes start it
# (tests/beam_pipelines/test_flink.py).
set -euo pipefail

BEAM_VERSION=2.62.0
HOME_DIR=/opt/shopstream
JOB_SERVER_JAR=beam-runners-flink-1.19-job-server-${BEAM_VERSION}.jar

# write_boot_wrapper HOME VENV: HOME/boot runs HOME/boot.bin with VENV's python
# first on PATH (boot starts the SDK harness with the python it finds there).
# Without RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT boot makes a venv of its own,
# /opt/apache/beam-venv, which lacks Beam and the project, and every worker
# dies with "Apache Beam is not installed in the runtime environment" (seen
# on a local Flink).
#
# HOME/environment, when present, is sourced first: settings every worker's
# Python needs but the job graph must not carry (Kafka credentials).
write_boot_wrapper() {
  local home=$1 venv=$2
  cat >"$home/boot" <<WRAPPER
#!/bin/bash
export PATH=$venv/bin:\$PATH
export RUN_PYTHON_SDK_IN_DEFAULT_ENVIRONMENT=1
if [[ -f $home/environment ]]; then
  set -a
  source $home/environment
  set +a
fi
exec $home/boot.bin "\$@"
WRAPPER
  chmod +x "$home/boot" "$home/boot.bin"
}

# salt_environment: a PII salt (on stdin, so that it is never in a process's
# arguments) as the line that sets SHOPSTREAM_PII_SALT.
salt_environment() {
  "${PYTHON:-python3.11}" -c '
import shlex, sys
salt = sys.stdin.read().strip()
if not salt:
  sys.exit("the PII salt secret is empty")
print(f"SHOPSTREAM_PII_SALT={shlex.quote(salt)}")
'
}

# kafka_environment: an MSK SCRAM secret ({"username": ..., "password": ...}, on
# stdin) as the Kafka reader's settings.
kafka_environment() {
  "${PYTHON:-python3.11}" -c '
import json, shlex, sys
secret = json.load(sys.stdin)
settings = {
  "SHOPSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
  "SHOPSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
  "SHOPSTREAM_KAFKA_USERNAME": secret["username"],
  "SHOPSTREAM_KAFKA_PASSWORD": secret["password"],
  "SHOPSTREAM_KAFKA_CA_LOCATION": "/etc/pki/tls/certs/ca-bundle.crt",
}
for name, value in settings.items():
  print(f"{name}={shlex.quote(value)}")
'
}

secret_string() {
  aws secretsmanager get-secret-value --secret-id "$1" --query SecretString --output text
}

main() {
  local artifacts=${1:?usage: bootstrap.sh s3://BUCKET/shopstream --pii-salt-secret ID [--kafka-secret ID]}
  shift
  local salt_secret='' kafka_secret=''
  while [[ $# -gt 0 ]]; do
    case $1 in
      --pii-salt-secret) salt_secret=$2; shift 2 ;;
      --kafka-secret) kafka_secret=$2; shift 2 ;;
      *) echo "bootstrap.sh: unknown argument $1" >&2; exit 2 ;;
    esac
  done
  if [[ -z $salt_secret ]]; then
    echo 'bootstrap.sh: --pii-salt-secret ID is needed (shopstream refuses real data without a salt)' >&2
    exit 2
  fi
  sudo mkdir -p "$HOME_DIR" /mnt/shopstream
  sudo chown "$(id -u):$(id -g)" "$HOME_DIR" /mnt/shopstream

  # Python 3.11 (Amazon Linux 2023, the OS of EMR 7) and the project.
  sudo dnf install -y -q python3.11 python3.11-pip
  python3.11 -m venv "$HOME_DIR/venv"
  aws s3 cp --recursive --quiet "$artifacts/dist/" /tmp/shopstream-dist/
  "$HOME_DIR/venv/bin/pip" install --quiet /tmp/shopstream-dist/shopstream-*.whl
  aws s3 cp --recursive --quiet "$artifacts/runner_configs/" "$HOME_DIR/runner_configs/"

  # Beam's boot binary, from the SDK image of the same Beam and Python version,
  # without running the image.
  sudo systemctl start docker
  local container
  container=$(sudo docker create "apache/beam_python3.11_sdk:${BEAM_VERSION}")
  sudo docker cp "$container:/opt/apache/beam/boot" "$HOME_DIR/boot.bin"
  sudo docker rm "$container" >/dev/null
  sudo chown "$(id -u):$(id -g)" "$HOME_DIR/boot.bin"
  write_boot_wrapper "$HOME_DIR" "$HOME_DIR/venv"
  (
    umask 077
    secret_string "$salt_secret" | salt_environment >"$HOME_DIR/environment"
    if [[ -n $kafka_secret ]]; then
      secret_string "$kafka_secret" | kafka_environment >>"$HOME_DIR/environment"
    fi
  )

  # The Flink job server, on the primary node (where the steps run).
  if grep -q '"isMaster": *true' /mnt/var/lib/info/instance.json; then
    curl -fsSL -o "$HOME_DIR/$JOB_SERVER_JAR" \
      "https://repo1.maven.org/maven2/org/apache/beam/beam-runners-flink-1.19-job-server/${BEAM_VERSION}/${JOB_SERVER_JAR}"
  fi
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  main "$@"
fi
