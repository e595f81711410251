#!/usr/bin/env bash
# Rebuilds the portal's JupyterLab extension from a clean checkout into built/ (committed:
# installing the extension then needs no node or npm, only a copy of built/ to
# <prefix>/share/jupyter/labextensions/@jupyter-portal/session-status/).
#
#   bash images/session/labextension/build.sh
#
# Needs node >= 20.19 and npm (the npm registry). Takes 25-55 s on the project's machine
# (most of it npm ci). Exactly what `jupyter-builder build .` (JupyterLab 4.6's
# `jupyter labextension build .`) runs, without needing a Python environment: the builder
# script of @jupyter/builder against JupyterLab's core package list from
# @jupyterlab/core-meta, both pinned in package-lock.json. Set JUPYTER_BUILDER=1 to go
# through jupyter-builder instead (it must be on PATH).
set -euo pipefail
cd "$(dirname "$0")"

start=$(date +%s)
rm -rf node_modules lib tsconfig.tsbuildinfo
# --ignore-scripts: no dependency needs its install script (fontawesome's only prints).
npm ci --no-audit --no-fund --ignore-scripts
npx --no-install tsc
if [ "${JUPYTER_BUILDER:-0}" = 1 ]; then
  jupyter-builder build .
else
  node node_modules/@jupyter/builder/lib/build-labextension.js \
    --core-package-file node_modules/@jupyterlab/core-meta/core.package.json .
fi
test -f built/package.json
echo "built/ rebuilt in $(($(date +%s) - start)) s:"
find built -type f | sort
