# Sourced by the launch scripts: creates (or reuses) .venv in the repository
# and installs the package with the given extras when pyproject.toml changed.
# Usage: source launch/_venv.sh EXTRAS  (always pass it, "" for none: a bare `source`
# hands the calling script's own arguments on as $1)
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/.venv"
extras="${1:-}"
if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating $venv" >&2
  python3 -m venv "$venv"
fi
stamp="$venv/.installed${extras:+-$extras}"
if [[ ! -f "$stamp" || "$root/pyproject.toml" -nt "$stamp" ]]; then
  echo "installing fingerprinting${extras:+[$extras]} into $venv (once)" >&2
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root${extras:+[$extras]}"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
cd "$root"
