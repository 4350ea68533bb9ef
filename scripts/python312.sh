#!/usr/bin/env bash
# Prints the path of a Python 3.12 interpreter (the Lambda runtime's version), or fails.
set -euo pipefail
if [ -n "${PYTHON312:-}" ] && "$PYTHON312" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
  echo "$PYTHON312"; exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
  for version in $(pyenv versions --bare 2>/dev/null | grep -E '^3\.12(\.[0-9]+)?$' | sort -rV); do
    candidate="$(pyenv prefix "$version")/bin/python3.12"
    [ -x "$candidate" ] && { echo "$candidate"; exit 0; }
  done
fi
for candidate in python3.12 /usr/bin/python3.12 /usr/local/bin/python3.12; do
  if command -v "$candidate" >/dev/null 2>&1 \
     && "$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    command -v "$candidate"; exit 0
  fi
done
echo "Python 3.12 not found: install it (e.g. 'pyenv install 3.12') or set PYTHON312" >&2
exit 1
