#!/bin/bash
# EMR bootstrap action: runs on every node of a shopstream cluster before
# Flink starts (see beam_pipelines/deploy_emr.py, which uploads this file).
#
#   bootstrap.sh s3://BUCKET/shopstream
#
# Installs into /opt/shopstream:
#   venv/            Python 3.11 with the shopstream wheel (Beam 2.62 and the rest)
#   runner_configs/  the runner YAMLs the EMR steps name
#   boot             Beam's SDK harness launcher (the PROCESS environment's command),
#                    copied out of Beam's SDK image and wrapped to use venv's Python
#   beam-runners-flink-1.19-job-server-2.77.0.jar   (primary node only)
set -euo pipefail

ARTIFACTS=${1:?usage: bootstrap.sh s3://BUCKET/shopstream}
BEAM_VERSION=2.62.0
HOME_DIR=/opt/shopstream
JOB_SERVER_JAR=beam-runners-flink-1.19-job-server-${BEAM_VERSION}.jar

sudo mkdir -p "$HOME_DIR" /mnt/shopstream
sudo chown "$(id -u):$(id -g)" "$HOME_DIR" /mnt/shopstream

# Python 3.11 (Amazon Linux 2023, the OS of EMR 7) and the project.
sudo dnf install -y -q python3.11 python3.11-pip
python3.11 -m venv "$HOME_DIR/venv"
aws s3 cp --recursive --quiet "$ARTIFACTS/dist/" /tmp/shopstream-dist/
"$HOME_DIR/venv/bin/pip" install --quiet /tmp/shopstream-dist/shopstream-*.whl
aws s3 cp --recursive --quiet "$ARTIFACTS/runner_configs/" "$HOME_DIR/runner_configs/"

# Beam's boot binary, from the SDK image of the same Beam and Python version,
# without running the image. It starts the SDK harness with the python it
# finds first on PATH: the wrapper puts the venv there.
sudo systemctl start docker
container=$(sudo docker create "apache/beam_python3.11_sdk:${BEAM_VERSION}")
sudo docker cp "$container:/opt/apache/beam/boot" "$HOME_DIR/boot.bin"
sudo docker rm "$container" >/dev/null
sudo chown "$(id -u):$(id -g)" "$HOME_DIR/boot.bin"
cat >"$HOME_DIR/boot" <<WRAPPER
#!/bin/bash
export PATH=$HOME_DIR/venv/bin:\$PATH
exec $HOME_DIR/boot.bin "\$@"
WRAPPER
chmod +x "$HOME_DIR/boot" "$HOME_DIR/boot.bin"

# The Flink job server, on the primary node (where the steps run).
if grep -q '"isMaster": *true' /mnt/var/lib/info/instance.json; then
  curl -fsSL -o "$HOME_DIR/$JOB_SERVER_JAR" \
    "https://repo1.maven.org/maven2/org/apache/beam/beam-runners-flink-1.19-job-server/${BEAM_VERSION}/${JOB_SERVER_JAR}"
fi
