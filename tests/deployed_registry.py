"""The registry as infra/k8s/mlflow deploys it, for tests: a throwaway PostgreSQL cluster and an
`mlflow server` on it with basic authentication and proxied artifacts.

PostgreSQL comes from the distribution's packages (`make system-packages`). A cluster is made
with initdb in a fresh folder under the system's temporary folder, listens on 127.0.0.1 at a free
port with password (scram-sha-256) authentication, and is removed on exit. PostgreSQL refuses
to run as root: under root, its programs run as the unprivileged `postgres` user that the
Debian package creates (runuser), and the folder is handed to that user.
"""

from __future__ import annotations

import configparser
import glob
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import unittest.mock
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

MLFLOW_K8S = Path(__file__).resolve().parents[1] / "infra" / "k8s" / "mlflow"
# The databases of infra/k8s/mlflow: POSTGRES_DB and postgres-init.sql.
TRACKING_DATABASE = "mlflow"
AUTH_DATABASE = "mlflow_auth"
DATABASE_USER = "mlflow"  # POSTGRES_USER in postgres.yaml
UNPRIVILEGED_USER = "postgres"
INSTALL_HINT = "run `make system-packages` (apt-get install postgresql) first"


def postgres_bindir() -> Path:
    """The folder of initdb and pg_ctl: Debian's newest /usr/lib/postgresql/<v>/bin, else PATH."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise RuntimeError(f"PostgreSQL is not installed (no initdb): {INSTALL_HINT}")
    return Path(initdb).resolve().parent


@dataclass(frozen=True)
class PostgresCluster:
    host: str
    port: int
    user: str
    password: str

    def uri(self, database: str, with_password: bool = False) -> str:
        """postgresql:// URI of a database; without the password by default, as the deployment
        writes it (libpq then takes the password from PGPASSWORD)."""
        login = f"{self.user}:{self.password}" if with_password else self.user
        return f"postgresql://{login}@{self.host}:{self.port}/{database}"


@contextmanager
def running_postgres(port: int, databases: tuple[str, ...] = ()) -> Iterator[PostgresCluster]:
    """A fresh PostgreSQL cluster on 127.0.0.1:port holding `databases`; removed on exit."""
    bindir = postgres_bindir()
    as_user: list[str] = []
    owner: pwd.struct_passwd | None = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam(UNPRIVILEGED_USER)
        except KeyError:
            raise RuntimeError(
                f"running as root, and there is no {UNPRIVILEGED_USER!r} user to run PostgreSQL "
                f"as: {INSTALL_HINT}"
            ) from None
        as_user = ["runuser", "-u", UNPRIVILEGED_USER, "--"]
    # Not under pytest's tmp folders: those are private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="danq-postgres-"))
    password = secrets.token_hex(12)
    data, log = root / "data", root / "server.log"
    (root / "pwfile").write_text(password + "\n")
    if owner is not None:
        for path in (root, root / "pwfile"):
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def run(*args: str) -> None:
        done = subprocess.run([*as_user, *args], capture_output=True, text=True)
        if done.returncode != 0:
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{' '.join(args)} failed:\n{done.stdout}{done.stderr}{tail}")

    started = False
    try:
        run(
            str(bindir / "initdb"),
            f"--pgdata={data}",
            f"--username={DATABASE_USER}",
            "--auth=scram-sha-256",
            f"--pwfile={root / 'pwfile'}",
            "--encoding=UTF8",
            "--no-sync",
        )
        # Durability settings off: a throwaway cluster; what the tests exercise (transactions,
        # unique keys, concurrent sessions) behaves the same.
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        run(str(bindir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(log), "-w", "start")
        started = True
        cluster = PostgresCluster("127.0.0.1", port, DATABASE_USER, password)
        import psycopg

        with psycopg.connect(cluster.uri("postgres", with_password=True), autocommit=True) as db:
            for name in databases:
                db.execute(f'CREATE DATABASE "{name}" OWNER "{DATABASE_USER}"')
        yield cluster
    finally:
        if started:
            run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class AuthServer:
    """An `mlflow server` as infra/k8s/mlflow runs it (PostgreSQL store, basic-auth)."""

    uri: str  # http://127.0.0.1:PORT, no credentials in it
    admin: tuple[str, str]
    artifacts: Path  # the server's --artifacts-destination
    database: PostgresCluster

    def env(self, user: str, password: str) -> dict[str, str]:
        """os.environ with this server as the tracking URI and user's login, for subprocesses."""
        return {
            **os.environ,
            "MLFLOW_TRACKING_URI": self.uri,
            "MLFLOW_TRACKING_USERNAME": user,
            "MLFLOW_TRACKING_PASSWORD": password,
        }

    @contextmanager
    def login(self, user: str, password: str) -> Iterator[None]:
        """MLflow clients in this process authenticate as user within the scope."""
        login = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": password}
        with unittest.mock.patch.dict(os.environ, login):
            yield

    def add_user(self, user: str, password: str) -> None:
        """A new MLflow user (default permission: the deployment's, READ), created by the admin."""
        from mlflow.server.auth.client import AuthServiceClient

        with self.login(*self.admin):
            AuthServiceClient(self.uri).create_user(user, password)


def auth_config(folder: Path, cluster: PostgresCluster) -> Path:
    """infra/k8s/mlflow/basic_auth.ini with the user database moved to this cluster."""
    config = configparser.ConfigParser()
    config.read(MLFLOW_K8S / "basic_auth.ini")
    config["mlflow"]["database_uri"] = cluster.uri(AUTH_DATABASE)
    path = folder / "basic_auth.ini"
    with open(path, "w") as fh:
        config.write(fh)
    return path


def server_environment(
    folder: Path, cluster: PostgresCluster, admin: tuple[str, str]
) -> Mapping[str, str]:
    """What mlflow.yaml gives the server container: its literal settings, PGPASSWORD, the auth
    config, the admin login and the Flask secret key (here generated, there from secrets)."""
    from .infra.manifests import deployment_container

    literal = {e["name"]: e["value"] for e in deployment_container()["env"] if "value" in e}
    return {
        **literal,
        "PGPASSWORD": cluster.password,
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_config(folder, cluster)),
        "MLFLOW_AUTH_ADMIN_USERNAME": admin[0],
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
    }
