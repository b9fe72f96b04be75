#!/usr/bin/env bash
# System packages the test suite needs beyond Python: PostgreSQL, for the registry tests that
# run `mlflow server` on a PostgreSQL store as infra/k8s/mlflow deploys it. Debian's package
# puts initdb/pg_ctl under /usr/lib/postgresql/<version>/bin and creates the unprivileged
# `postgres` user that a test cluster runs as when the tests run as root (PostgreSQL refuses
# to run as root). Called by `make system-packages` (a prerequisite of `make test`, so of
# .ci/run); does nothing when PostgreSQL is already installed.
set -euo pipefail

have_postgres() {
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null
}

if have_postgres; then
  exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "error: PostgreSQL (initdb, pg_ctl) is not installed and installing it needs root:" >&2
  echo "  sudo apt-get install -y postgresql   # then run make test again" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null; then
  echo "error: PostgreSQL is not installed and this is not a Debian/Ubuntu system (no apt-get):" >&2
  echo "  install PostgreSQL 15 or newer with your package manager, then run make test again" >&2
  exit 1
fi

echo "installing PostgreSQL from the distribution's packages (apt-get install postgresql)"
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get update -qq
# The package would start a system-wide server on 5432: the tests start their own instead.
"${as_root[@]}" apt-get install -y -qq --no-install-recommends postgresql >/dev/null
if command -v systemctl >/dev/null && systemctl is-active --quiet postgresql 2>/dev/null; then
  "${as_root[@]}" systemctl stop postgresql || true
fi
have_postgres || { echo "error: apt-get installed postgresql but no initdb was found" >&2; exit 1; }
echo "PostgreSQL installed: $(compgen -G '/usr/lib/postgresql/*/bin/initdb' | head -1)"
