"""A real Flink on this machine: the distribution, Beam's job server, a cluster.

`make install` puts into ``.tools/`` (ignored by git):

- ``flink-1.19.0/``: the Flink distribution, assembled from the PyPI packages
  ``apache-flink-libraries`` (lib/, opt/, plugins/) and ``apache-flink``
  (bin/, conf/), which together ship what the Apache tarball holds;
- ``flink-job-server/``: Beam's Flink job server, as the jars Maven resolves
  (``deploy/flink/job-server-pom.xml``) and a launcher jar whose manifest names
  them, so ``java -jar`` starts it like Beam's shaded job server jar;
- ``bin/prism`` and ``bin/boot``: Beam's Prism runner and the Python SDK
  harness launcher (the PROCESS environment's command on EMR), from
  ``go install``.

:class:`LocalFlinkCluster` runs a standalone JobManager and TaskManager on
free loopback ports, as separate processes:

    with LocalFlinkCluster(task_slots=4) as cluster:
        ... --runner=FlinkRunner --flink_master=cluster.master ...

    python -m beam_pipelines.dev.local_flink job-server-jar   # make install's steps
    python -m beam_pipelines.dev.local_flink assemble-flink DOWNLOADS
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request
import zipfile
from typing import Optional

from beam_pipelines.dev.local_services import PROJECT_ROOT, free_port

BEAM_VERSION = '2.62.0'
FLINK_VERSION = '1.19.0'
TOOLS_DIR = os.path.join(PROJECT_ROOT, '.tools')
FLINK_HOME = os.path.join(TOOLS_DIR, f'flink-{FLINK_VERSION}')
JOB_SERVER_DIR = os.path.join(TOOLS_DIR, 'flink-job-server')
JOB_SERVER_JAR = os.path.join(
  JOB_SERVER_DIR, f'beam-runners-flink-1.19-job-server-{BEAM_VERSION}.jar'
)
JOB_SERVER_MAIN = 'org.apache.beam.runners.flink.FlinkJobServerDriver'
PRISM = os.path.join(TOOLS_DIR, 'bin', 'prism')
BOOT = os.path.join(TOOLS_DIR, 'bin', 'boot')


def write_job_server_jar(lib_dir: str, jar_path: str) -> None:
  """A jar with only a manifest: the job server's main class and classpath."""
  jars = sorted(os.path.basename(p) for p in glob.glob(os.path.join(lib_dir, '*.jar')))
  if not jars:
    raise ValueError(f'no jars in {lib_dir}: run make install')
  relative = os.path.relpath(lib_dir, os.path.dirname(jar_path))
  class_path = ' '.join(f'{relative}/{name}' for name in jars)
  manifest = _manifest_lines(
    [('Manifest-Version', '1.0'), ('Main-Class', JOB_SERVER_MAIN), ('Class-Path', class_path)]
  )
  with zipfile.ZipFile(jar_path, 'w') as jar:
    jar.writestr('META-INF/MANIFEST.MF', manifest)


def _manifest_lines(entries: list[tuple[str, str]]) -> str:
  # The JAR spec caps a manifest line at 72 bytes; longer values continue on
  # lines that start with one space.
  lines = []
  for key, value in entries:
    line = f'{key}: {value}'
    lines.append(line[:72])
    rest = line[72:]
    while rest:
      lines.append(' ' + rest[:71])
      rest = rest[71:]
  return '\r\n'.join(lines) + '\r\n\r\n'


def assemble_flink(downloads: str, home: str = FLINK_HOME) -> None:
  """FLINK_HOME from the PyPI sdist of apache-flink-libraries and the apache-flink wheel."""
  libraries = glob.glob(os.path.join(downloads, f'apache-flink-libraries-{FLINK_VERSION}.tar.gz'))
  wheels = glob.glob(os.path.join(downloads, f'apache_flink-{FLINK_VERSION}-*.whl'))
  if not libraries or not wheels:
    raise ValueError(f'{downloads} lacks the apache-flink(-libraries) {FLINK_VERSION} downloads')
  staging = home + '.partial'
  shutil.rmtree(staging, ignore_errors=True)
  os.makedirs(staging)
  prefix = f'apache-flink-libraries-{FLINK_VERSION}/deps/'
  with tarfile.open(libraries[0]) as sdist:
    for member in sdist.getmembers():
      if member.name.startswith(prefix) and member.isfile():
        target = os.path.join(staging, member.name[len(prefix) :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with sdist.extractfile(member) as src, open(target, 'wb') as dst:
          shutil.copyfileobj(src, dst)
  with zipfile.ZipFile(wheels[0]) as wheel:
    for name in wheel.namelist():
      if name.startswith(('pyflink/bin/', 'pyflink/conf/')) and not name.endswith('/'):
        target = os.path.join(staging, name[len('pyflink/') :])
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with wheel.open(name) as src, open(target, 'wb') as dst:
          shutil.copyfileobj(src, dst)
  for script in glob.glob(os.path.join(staging, 'bin', '*')):
    os.chmod(script, 0o755)
  shutil.rmtree(home, ignore_errors=True)
  os.rename(staging, home)


class LocalFlinkCluster:
  """A standalone Flink session cluster: one JobManager, one TaskManager.

  The configuration lives in a temporary folder; ports are free loopback
  ports, so clusters of parallel tests do not meet. Checkpoints go to
  ``work_dir/checkpoints`` (a local folder standing in for S3).
  """

  def __init__(
    self,
    task_slots: int = 4,
    work_dir: Optional[str] = None,
    taskmanager_memory: str = '3072m',
  ):
    if not os.path.isdir(FLINK_HOME):
      raise RuntimeError(f'no Flink at {FLINK_HOME}: run make install')
    self._own_dir = work_dir is None
    self.work_dir = work_dir or tempfile.mkdtemp(prefix='shopstream-flink-')
    self.rest_port = free_port()
    self._rpc_port = free_port()
    self._task_slots = task_slots
    self._taskmanager_memory = taskmanager_memory
    self.jobmanager: Optional[subprocess.Popen] = None
    self.taskmanager: Optional[subprocess.Popen] = None

  @property
  def master(self) -> str:
    return f'localhost:{self.rest_port}'

  @property
  def conf_dir(self) -> str:
    return os.path.join(self.work_dir, 'conf')

  def __enter__(self) -> LocalFlinkCluster:
    self.start()
    return self

  def __exit__(self, *exc) -> None:
    self.stop()

  def start(self, timeout_s: float = 90) -> None:
    self._write_config()
    self.jobmanager = self._launch('jobmanager')
    self.start_taskmanager(timeout_s)

  def start_taskmanager(self, timeout_s: float = 90) -> None:
    """Starts a TaskManager and waits until the JobManager has registered it."""
    known = {tm['id'] for tm in self.taskmanagers()}
    self.taskmanager = self._launch('taskmanager')
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
      for process, role in ((self.jobmanager, 'jobmanager'), (self.taskmanager, 'taskmanager')):
        if process.poll() is not None:
          raise RuntimeError(f'the Flink {role} exited: {self._log_tail(role)}')
      # A new TaskManager, not one the JobManager has not yet found dead.
      if any(tm['id'] not in known for tm in self.taskmanagers()):
        return
      time.sleep(0.5)
    raise RuntimeError(
      f'no TaskManager registered after {timeout_s} s: {self._log_tail("jobmanager")}'
    )

  def kill_taskmanager(self) -> None:
    """SIGKILL of the TaskManager and every SDK harness it started: a lost node."""
    os.killpg(self.taskmanager.pid, signal.SIGKILL)
    self.taskmanager.wait()

  def stop(self) -> None:
    for process in (self.taskmanager, self.jobmanager):
      if process is not None and process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
          process.wait(20)
        except subprocess.TimeoutExpired:
          os.killpg(process.pid, signal.SIGKILL)
          process.wait()
    if self._own_dir:
      shutil.rmtree(self.work_dir, ignore_errors=True)

  def rest(self, path: str) -> Optional[dict]:
    """GET of Flink's REST API, None while it does not answer."""
    try:
      with urllib.request.urlopen(f'http://{self.master}/{path}', timeout=5) as response:
        return json.load(response)
    except OSError:
      return None

  def jobs(self) -> list[dict]:
    return (self.rest('jobs/overview') or {}).get('jobs', [])

  def taskmanagers(self) -> list[dict]:
    return (self.rest('taskmanagers') or {}).get('taskmanagers', [])

  def _write_config(self) -> None:
    os.makedirs(self.conf_dir, exist_ok=True)
    for name in glob.glob(os.path.join(FLINK_HOME, 'conf', 'log4j*.properties')):
      shutil.copy(name, self.conf_dir)
    config = {
      # Flink's own JVM flags for Java 17 (from the distribution's config.yaml).
      'env.java.opts.all': _distribution_java_opts(),
      'jobmanager.rpc.address': 'localhost',
      'jobmanager.rpc.port': str(self._rpc_port),
      'jobmanager.bind-host': 'localhost',
      'jobmanager.memory.process.size': '1024m',
      'taskmanager.bind-host': 'localhost',
      'taskmanager.host': 'localhost',
      'taskmanager.numberOfTaskSlots': str(self._task_slots),
      'taskmanager.memory.process.size': self._taskmanager_memory,
      # Beam's batch jobs run pipelined: every task of the whole graph holds
      # network buffers at once. The default (a tenth of Flink's memory, about
      # 5,000 buffers here) was short by a few hundred for the full batch
      # pipeline in CI ("Insufficient number of network buffers").
      'taskmanager.memory.network.min': '768m',
      'taskmanager.memory.network.max': '768m',
      'rest.address': 'localhost',
      'rest.bind-address': 'localhost',
      'rest.port': str(self.rest_port),
      'state.checkpoints.dir': 'file://' + os.path.join(self.work_dir, 'checkpoints'),
      # A job restarts on a new TaskManager after one dies.
      'restart-strategy.type': 'fixed-delay',
      'restart-strategy.fixed-delay.attempts': '20',
      'restart-strategy.fixed-delay.delay': '2 s',
      'heartbeat.timeout': '15000',
    }
    with open(os.path.join(self.conf_dir, 'config.yaml'), 'w', encoding='utf-8') as f:
      for key, value in config.items():
        f.write(f'{key}: {json.dumps(value)}\n')

  def _launch(self, role: str) -> subprocess.Popen:
    env = {
      **os.environ,
      'FLINK_CONF_DIR': self.conf_dir,
      'FLINK_LOG_DIR': os.path.join(self.work_dir, 'log'),
    }
    log = open(self._log_path(role), 'ab')  # the child writes it
    # Its own process group: the script's JVM and any SDK harness it starts
    # are signalled together.
    return subprocess.Popen(
      [os.path.join(FLINK_HOME, 'bin', f'{role}.sh'), 'start-foreground'],
      env=env,
      stdout=log,
      stderr=subprocess.STDOUT,
      start_new_session=True,
    )

  def _log_path(self, role: str) -> str:
    return os.path.join(self.work_dir, f'{role}.out')

  def _log_tail(self, role: str, size: int = 3000) -> str:
    try:
      with open(self._log_path(role), 'rb') as f:
        return f.read()[-size:].decode('utf-8', 'replace')
    except OSError:
      return '(no log)'


def _distribution_java_opts() -> str:
  path = os.path.join(FLINK_HOME, 'conf', 'config.yaml')
  with open(path, encoding='utf-8') as f:
    for line in f:
      if line.strip().startswith('all:'):
        return line.split('all:', 1)[1].strip()
  raise RuntimeError(f'{path} has no env.java.opts.all')


def main(argv: Optional[list[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m beam_pipelines.dev.local_flink')
  commands = parser.add_subparsers(dest='command', required=True)
  commands.add_parser('job-server-jar', help='Write the launcher jar of the job server.')
  assemble = commands.add_parser('assemble-flink', help='Build FLINK_HOME from PyPI downloads.')
  assemble.add_argument('downloads')
  args = parser.parse_args(argv)
  if args.command == 'job-server-jar':
    write_job_server_jar(os.path.join(JOB_SERVER_DIR, 'lib'), JOB_SERVER_JAR)
  else:
    assemble_flink(args.downloads)
  return 0


if __name__ == '__main__':
  sys.exit(main())
